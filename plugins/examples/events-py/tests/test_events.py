import pytest

import plugin
from prx_pdk.testing import FakeHost


def test_counts_topics_and_keeps_the_last_payload():
    with FakeHost() as fake:
        plugin.on_event("prices.ibm", {"close": 125.5})
        plugin.on_event("prices.ibm", {"close": 126.0})
        assert fake.kv["seen:prices.ibm"] == b"2"
        assert fake.kv["last:prices.ibm"] == b'{"close":126.0}'


def test_refuses_a_payload_that_is_not_an_object():
    with FakeHost():
        with pytest.raises(TypeError, match="expected a JSON object"):
            plugin.on_event("prices.ibm", [1, 2])
