import pytest

from prx_pdk import HostError, HostUnavailable, host
from prx_pdk.testing import FakeHost


def test_config_and_log():
    with FakeHost(config={"api_key": "k"}) as fake:
        assert host.config.get("api_key") == "k"
        assert host.config.get("missing") is None
        assert host.config.get_or("timeout_ms", "5000") == "5000"
        assert host.config.get_all() == [("api_key", "k")]
        host.log.warn("careful")
        host.log.info(42)
        assert fake.logs == [("warn", "careful"), ("info", "42")]


def test_kv_helpers():
    with FakeHost() as fake:
        host.kv.set("raw", b"\x00\x01")
        host.kv.set_str("name", "Ada")
        host.kv.set_json("settings", {"x": 1})
        assert host.kv.get("raw") == b"\x00\x01"
        assert host.kv.get_str("name") == "Ada"
        assert host.kv.get_str("raw") == "\x00\x01"
        assert host.kv.get_json("settings") == {"x": 1}
        assert host.kv.get_json("name") is None
        assert host.kv.get("missing") is None
        assert host.kv.list_keys("") == ["name", "raw", "settings"]
        assert host.kv.increment("count") == 1
        assert host.kv.increment("count", delta=4) == 5
        assert host.kv.delete("name") is True
        assert host.kv.delete("name") is False
        assert fake.kv["count"] == b"5"


def test_host_refusals_are_host_errors():
    with FakeHost(max_kv_bytes=8):
        with pytest.raises(HostError, match="quota"):
            host.kv.set("key", "a long value")
        host.kv.set_str("n", "x")
        with pytest.raises(HostError, match="not a number"):
            host.kv.increment("n")


def test_an_undeclared_permission_says_how_to_declare_it():
    with FakeHost(permissions=set()):
        with pytest.raises(HostUnavailable, match="declare the `kv` permission"):
            host.kv.get("k")
        with pytest.raises(HostUnavailable, match="http-outbound"):
            host.http.get("https://example.com")


def test_events():
    with FakeHost() as fake:
        host.events.publish("a.b", '{"x":1}')
        host.events.publish_json("a.c", {"y": [1, 2]})
        sub = host.events.subscribe("weather.*")
        host.events.unsubscribe(sub)
        assert fake.published == [("a.b", '{"x":1}'), ("a.c", '{"y":[1,2]}')]
        assert fake.subscriptions == {}


def test_http_response_helpers():
    url = "https://api.example.com/data"
    with FakeHost(responses={("GET", url): (200, '{"ok": true}'), ("POST", url): (201, "made")}) as fake:
        r = host.http.get(url, headers=[("X-Token", "abc")])
        assert r.status == 200 and r.json() == {"ok": True} and r.text() == '{"ok": true}'
        r = host.http.post_json(url, {"k": "v"})
        assert r.status == 201
        method, _, headers, body = fake.requests[-1]
        assert method == "POST" and ("Content-Type", "application/json") in headers
        assert body == b'{"k":"v"}'
        with pytest.raises(HostError):
            host.http.request("delete", url)


def test_memory():
    with FakeHost():
        first = host.memory.store("Paris is the capital of France", category="fact")
        host.memory.store("Tea at five")
        found = host.memory.recall("capital", limit=5)
        assert [e.id for e in found] == [first]
        assert found[0].category == "fact" and found[0].text.startswith("Paris")
