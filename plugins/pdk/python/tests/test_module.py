import types

import pytest

from prx_host import ModuleInfo, Stat
from prx_pdk import module, worlds
from prx_pdk.errors import Err
from prx_pdk.testing import FakeHost


class Forecaster:
    name = "myforecaster"

    def on_load(self, host, config=None):
        self.host = host
        self.config = config
        self.events = []
        host.register_rpc("double", self._double)
        host.register_event_handler("prices.*", self.events.append)

    def _double(self, payload):
        if payload["n"] < 0:
            raise ValueError("n must not be negative")
        key = str(payload["n"])
        hit = self.host.cache_get("double", key)
        if hit is not None:
            return hit
        value = {"n": payload["n"] * 2}
        self.host.cache_put("double", key, value)
        return value

    def describe(self):
        return ModuleInfo(status="LOADED", stats=[Stat("model", lambda: "x2"), Stat("events", lambda: len(self.events))])


def test_the_prismr_contract():
    with FakeHost(config={"depth": "3"}) as fake:
        instance = fake.load(Forecaster)
        assert instance.config == {"depth": "3"}
        assert fake.rpcs == ["double"]
        assert list(fake.subscriptions.values()) == ["prices.*"]
        assert fake.rpc("double", {"n": 4}) == {"n": 8}
        assert fake.cache == {("double", "4"): b'{"n":8}'}
        fake.deliver("prices.ibm", {"close": 1.5})
        fake.deliver("news.x", {"ignored": True})
        fake.deliver("prices.aapl", [1, 2])
        assert instance.events == [{"close": 1.5, "type": "prices.ibm"}, {"payload": [1, 2], "type": "prices.aapl"}]
        assert fake.describe() == ("LOADED", [("model", "x2"), ("events", "2")])


def test_registration_is_only_open_during_on_load():
    with FakeHost() as fake:
        instance = fake.load(Forecaster)
        with pytest.raises(RuntimeError, match="only possible in on_load"):
            instance.host.register_rpc("late", lambda p: p)


def test_on_load_without_config_and_host_publish():
    class Minimal:
        def on_load(self, host):
            host.publish({"type": "minimal.loaded", "ok": True})
            host.publish("minimal.topic", [1])

    with FakeHost() as fake:
        fake.load(Minimal)
        assert fake.published == [("minimal.loaded", '{"type":"minimal.loaded","ok":true}'), ("minimal.topic", "[1]")]
        assert fake.describe() == ("LOADED", [])


def test_exports_turn_exceptions_into_errors():
    exports = worlds.ModuleExports()
    with FakeHost():
        module.use(Forecaster)
        exports.on_load()
        assert exports.on_rpc("double", '{"n": 2}') == '{"n":4}'
        with pytest.raises(Err) as e:
            exports.on_rpc("double", '{"n": -1}')
        assert e.value.value == "ValueError: n must not be negative"
        with pytest.raises(Err) as e:
            exports.on_rpc("nothing", "{}")
        assert "no RPC named 'nothing'" in e.value.value
        info = exports.describe()
        assert info.status == "LOADED" and [(s.name, s.value) for s in info.stats][0] == ("model", "x2")


def test_a_failing_describe_shows_the_error():
    class Broken(Forecaster):
        def describe(self):
            raise ZeroDivisionError("division by zero")

    with FakeHost() as fake:
        fake.load(Broken)
        assert fake.describe() == ("ERROR", [("error", "ZeroDivisionError: division by zero")])


def test_the_module_class_is_found_in_plugin_py():
    plugin = types.ModuleType("plugin")
    plugin.Forecaster = Forecaster
    Forecaster.__module__ = "plugin"
    try:
        assert module.find(plugin) is Forecaster
        plugin.Other = type("Other", (Forecaster,), {"__module__": "plugin"})
        with pytest.raises(TypeError, match="exactly one module class"):
            module.find(plugin)
        plugin.MODULE = Forecaster
        assert module.find(plugin) is Forecaster
    finally:
        Forecaster.__module__ = __name__
