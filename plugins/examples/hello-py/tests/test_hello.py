import pytest

import plugin
from prx_pdk.testing import FakeHost


def test_greets_and_counts():
    with FakeHost(config={"greeting": "Hi"}) as fake:
        assert plugin.hello({"name": "Ada"}) == "Hi, Ada! (greeting #1)"
        assert plugin.hello({}) == "Hi, world! (greeting #2)"
        assert fake.kv["greetings"] == b"2"
        assert fake.logs[-1] == ("info", "greeting #2 for world")


def test_refuses_a_bad_name():
    with FakeHost():
        with pytest.raises(ValueError, match="non-empty string"):
            plugin.hello({"name": 42})
