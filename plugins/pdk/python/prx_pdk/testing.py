"""A host in memory, for a plugin's own tests under CPython (pytest).

    from prx_pdk.testing import FakeHost

    def test_hello():
        with FakeHost(config={"greeting": "Hi"}) as fake:
            assert plugin.hello({"name": "Ada"}) == "Hi, Ada!"
            assert fake.logs == [("info", "greeted Ada")]

It keeps kv, cache and memory in dicts, records logs, published events,
subscriptions and RPC registrations, and answers HTTP from `responses`
(`{(method, url): (status, body)}`). Permissions can be withheld to test
the refusals: `FakeHost(permissions={"kv"})` refuses everything else.
"""

import json

from . import _backend
from . import module as _module
from .errors import HostError, HostUnavailable

ALL_PERMISSIONS = frozenset({"kv", "events", "http-outbound", "memory"})


class FakeHost:
    def __init__(self, config=None, permissions=ALL_PERMISSIONS, responses=None, max_kv_bytes=1024 * 1024):
        self.config = dict(config or {})
        self.permissions = set(permissions)
        self.responses = dict(responses or {})
        self.max_kv_bytes = max_kv_bytes
        self.logs = []
        self.kv = {}
        self.cache = {}
        self.published = []
        self.subscriptions = {}
        self.rpcs = []
        self.requests = []
        self.memories = []
        self._previous = None

    def __enter__(self):
        self._previous = _backend.install(self)
        _module._rpcs.clear()
        _module._handlers.clear()
        _module._state["instance"] = None
        return self

    def __exit__(self, *exc):
        _backend.install(self._previous)
        return False

    def _need(self, interface, permission):
        if permission not in self.permissions:
            raise HostUnavailable(interface, permission)

    def log(self, level, message):
        self.logs.append((level, message))

    def config_get(self, key):
        return self.config.get(key)

    def config_get_all(self):
        return sorted(self.config.items())

    def kv_get(self, key):
        self._need("kv", "kv")
        return self.kv.get(key)

    def kv_set(self, key, value):
        self._need("kv", "kv")
        used = sum(len(k) + len(v) for k, v in self.kv.items() if k != key)
        if used + len(key) + len(value) > self.max_kv_bytes:
            raise HostError(f"kv quota exceeded ({self.max_kv_bytes} bytes)")
        self.kv[key] = bytes(value)

    def kv_delete(self, key):
        self._need("kv", "kv")
        return self.kv.pop(key, None) is not None

    def kv_list_keys(self, prefix):
        self._need("kv", "kv")
        return sorted(k for k in self.kv if k.startswith(prefix))

    def kv_increment(self, key, delta):
        self._need("kv-atomic", "kv")
        try:
            value = int(self.kv.get(key, b"0").decode()) + delta
        except ValueError:
            raise HostError(f"the value at {key!r} is not a number") from None
        self.kv[key] = str(value).encode()
        return value

    def events_publish(self, topic, payload):
        self._need("events", "events")
        self.published.append((topic, payload))

    def events_subscribe(self, pattern):
        self._need("events", "events")
        subscription = len(self.subscriptions) + 1
        self.subscriptions[subscription] = pattern
        return subscription

    def events_unsubscribe(self, subscription):
        self._need("events", "events")
        if self.subscriptions.pop(subscription, None) is None:
            raise HostError(f"no subscription {subscription}")

    def http_request(self, method, url, headers, body):
        self._need("http-outbound", "http-outbound")
        self.requests.append((method, url, headers, body))
        if (method, url) not in self.responses:
            raise HostError(f"{method} {url}: no response set in FakeHost.responses")
        status, response = self.responses[(method, url)]
        return status, [], response.encode() if isinstance(response, str) else response

    def memory_store(self, text, category):
        self._need("memory", "memory")
        self.memories.append((str(len(self.memories) + 1), text, category, 0.5))
        return self.memories[-1][0]

    def memory_recall(self, query, limit):
        self._need("memory", "memory")
        words = query.lower().split()
        found = [m for m in self.memories if any(w in m[1].lower() for w in words)]
        return found[:limit]

    def cache_get(self, namespace, key):
        self._need("cache", "kv")
        return self.cache.get((namespace, key))

    def cache_put(self, namespace, key, value):
        self._need("cache", "kv")
        self.cache[(namespace, key)] = bytes(value)

    def cache_clear(self, namespace):
        self._need("cache", "kv")
        keys = [k for k in self.cache if k[0] == namespace]
        for k in keys:
            del self.cache[k]
        return len(keys)

    def rpc_register(self, name):
        self.rpcs.append(name)

    # Driving a bus module the way the host does.

    def load(self, cls):
        """Creates the module and runs its on_load; returns the instance."""
        _module.use(cls)
        _module.load()
        return _module._state["instance"]

    def rpc(self, name, payload):
        """Calls a registered RPC with a JSON-able payload; the decoded reply."""
        return json.loads(_module.rpc(name, json.dumps(payload)))

    def deliver(self, topic, payload):
        """Delivers an event to the module's handlers, if it subscribed to
        a pattern that matches it."""
        if any(_module.matches(p, topic) for p in self.subscriptions.values()):
            _module.event(topic, payload if isinstance(payload, str) else json.dumps(payload))

    def describe(self):
        """(status, [(stat, value)]) as the console shows them."""
        return _module.describe()
