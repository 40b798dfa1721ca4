import sys

import pytest

from prx_pdk import worlds


@pytest.fixture(autouse=True)
def fresh_registry():
    """Each test registers its own capabilities."""
    saved = dict(worlds._registered)
    worlds._registered.clear()
    worlds._stores.clear()
    yield
    worlds._registered.clear()
    worlds._registered.update(saved)
    sys.modules.pop("plugin", None)
