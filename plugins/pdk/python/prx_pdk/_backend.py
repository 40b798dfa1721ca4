"""The seam between the SDK and the host.

Inside a component the backend is `WitBackend`: the host interfaces that
componentize-py generated for this plugin's world (`wit_world.imports`),
bound when the module is imported, which happens at build time, so they
are part of the snapshot. Under plain CPython there is no host; the tests
install `prx_pdk.testing.FakeHost`, which has the same methods.
"""

import importlib

from .errors import Err, HostError, HostUnavailable

# Interface (module name in wit_world.imports) -> the permission it needs.
PERMISSIONS = {
    "log": None,
    "config": None,
    "kv": "kv",
    "kv_atomic": "kv",
    "cache": "kv",
    "events": "events",
    "http_outbound": "http-outbound",
    "memory": "memory",
    "rpc": None,
}

_LEVELS = ("trace", "debug", "info", "warn", "error")


class WitBackend:
    """Calls the host through the interfaces this plugin was built with."""

    def __init__(self):
        self.interfaces = {}
        for name in PERMISSIONS:
            try:
                self.interfaces[name] = importlib.import_module("wit_world.imports." + name)
            except ImportError:
                pass

    def _iface(self, name):
        iface = self.interfaces.get(name)
        if iface is None:
            raise HostUnavailable(name.replace("_", "-"), PERMISSIONS[name])
        return iface

    def _call(self, name, function, *args):
        try:
            return getattr(self._iface(name), function)(*args)
        except Err as e:
            raise HostError(str(e.value)) from None

    def log(self, level, message):
        iface = self._iface("log")
        iface.log(iface.Level(_LEVELS.index(level)), message)

    def config_get(self, key):
        return self._call("config", "get", key)

    def config_get_all(self):
        return list(self._call("config", "get_all"))

    def kv_get(self, key):
        return self._call("kv", "get", key)

    def kv_set(self, key, value):
        self._call("kv", "set", key, value)

    def kv_delete(self, key):
        return self._call("kv", "delete", key)

    def kv_list_keys(self, prefix):
        return list(self._call("kv", "list_keys", prefix))

    def kv_increment(self, key, delta):
        return self._call("kv_atomic", "increment", key, delta)

    def events_publish(self, topic, payload):
        self._call("events", "publish", topic, payload)

    def events_subscribe(self, pattern):
        return self._call("events", "subscribe", pattern)

    def events_unsubscribe(self, subscription):
        self._call("events", "unsubscribe", subscription)

    def http_request(self, method, url, headers, body):
        r = self._call("http_outbound", "request", method, url, headers, body)
        return r.status, list(r.headers), bytes(r.body)

    def memory_store(self, text, category):
        return self._call("memory", "store", text, category)

    def memory_recall(self, query, limit):
        entries = self._call("memory", "recall", query, limit)
        return [(e.id, e.text, e.category, e.importance) for e in entries]

    def cache_get(self, namespace, key):
        return self._call("cache", "get", namespace, key)

    def cache_put(self, namespace, key, value):
        self._call("cache", "put", namespace, key, value)

    def cache_clear(self, namespace):
        return self._call("cache", "clear", namespace)

    def rpc_register(self, name):
        self._call("rpc", "register", name)


_current = WitBackend()


def current():
    return _current


def install(backend):
    """Replaces the backend (the tests' fake host); returns the previous one."""
    global _current
    previous, _current = _current, backend
    return previous
