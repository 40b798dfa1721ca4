"""The PRX host API as plugin authors use it: `host.log`, `host.config`,
`host.kv`, `host.events`, `host.http`, `host.memory`, and for bus modules
`host.register_rpc`, `host.register_event_handler`, `host.publish` and the
namespaced cache `host.cache_get/cache_put/cache_clear`.

Every call goes to the host, which checks the plugin's permissions and
quotas; a refusal raises `HostError` with the host's reason.
"""

import json
import time
from dataclasses import dataclass, field

from . import _backend


def _b():
    return _backend.current()


def _bytes(value):
    if isinstance(value, str):
        return value.encode()
    return bytes(value)


def _json(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Log:
    """Lines in the host's log, tagged with the plugin's name."""

    def trace(self, message):
        _b().log("trace", str(message))

    def debug(self, message):
        _b().log("debug", str(message))

    def info(self, message):
        _b().log("info", str(message))

    def warn(self, message):
        _b().log("warn", str(message))

    def error(self, message):
        _b().log("error", str(message))


class Config:
    """The read-only `[config]` table of plugin.toml."""

    def get(self, key):
        """The value (str), or None."""
        return _b().config_get(key)

    def get_or(self, key, default):
        value = _b().config_get(key)
        return default if value is None else value

    def get_all(self):
        """Every (key, value) pair."""
        return [(k, v) for k, v in _b().config_get_all()]


class Kv:
    """The plugin's own persistent key-value store (permission `kv`)."""

    def get(self, key):
        """The value as bytes, or None."""
        value = _b().kv_get(key)
        return None if value is None else bytes(value)

    def set(self, key, value):
        """Stores bytes (a str is stored as UTF-8)."""
        _b().kv_set(key, _bytes(value))

    def get_str(self, key):
        value = self.get(key)
        if value is None:
            return None
        try:
            return value.decode()
        except UnicodeDecodeError:
            return None

    def set_str(self, key, value):
        self.set(key, str(value).encode())

    def get_json(self, key):
        """The value decoded from JSON, or None (absent or not JSON)."""
        value = self.get(key)
        if value is None:
            return None
        try:
            return json.loads(value)
        except ValueError:
            return None

    def set_json(self, key, value):
        self.set(key, _json(value).encode())

    def delete(self, key):
        """True when the key existed."""
        return bool(_b().kv_delete(key))

    def list_keys(self, prefix=""):
        return list(_b().kv_list_keys(prefix))

    def increment(self, key, delta=1):
        """Adds `delta` atomically (a missing key counts as 0); the new value."""
        return int(_b().kv_increment(key, int(delta)))


class Events:
    """The host's event bus (permission `events`)."""

    def publish(self, topic, payload="{}"):
        """`payload` is JSON text (at most 64 KiB)."""
        _b().events_publish(topic, payload if isinstance(payload, str) else _json(payload))

    def publish_json(self, topic, value):
        _b().events_publish(topic, _json(value))

    def subscribe(self, pattern):
        """`*`, `prefix.*` or an exact topic; returns the subscription id."""
        return int(_b().events_subscribe(pattern))

    def unsubscribe(self, subscription_id):
        _b().events_unsubscribe(int(subscription_id))


@dataclass
class Response:
    """An HTTP response: `status`, `headers` (list of pairs), `body` (bytes)."""

    status: int
    headers: list = field(default_factory=list)
    body: bytes = b""

    def text(self):
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        """The first header called `name` (any case), or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


class Http:
    """Outbound HTTP through the host (permission `http-outbound`), only to
    the origins of plugin.toml's `http_allowlist`."""

    def request(self, method, url, headers=None, body=None):
        status, response_headers, response_body = _b().http_request(
            method.upper(), url, [(str(k), str(v)) for k, v in (headers or [])],
            None if body is None else _bytes(body),
        )
        return Response(int(status), list(response_headers), bytes(response_body))

    def get(self, url, headers=None):
        return self.request("GET", url, headers)

    def post_json(self, url, value, headers=None):
        headers = list(headers or [])
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", "application/json"))
        return self.request("POST", url, headers, _json(value))


@dataclass
class MemoryEntry:
    id: str
    text: str
    category: str
    importance: float


class Memory:
    """The host's long-term memory (permission `memory`)."""

    def store(self, text, category="other"):
        """Returns the new entry's id."""
        return _b().memory_store(text, category)

    def recall(self, query, limit=5):
        return [MemoryEntry(*entry) for entry in _b().memory_recall(query, int(limit))]


class Clock:
    """The time, from the component's clock (PRX's `host.clock`)."""

    def now_ms(self):
        return time.time_ns() // 1_000_000

    def timezone(self):
        """Plugins see UTC: the host gives them no local time zone."""
        return "UTC"


class Host:
    """What a plugin reaches the host through. One instance: `prx_pdk.host`."""

    def __init__(self):
        self.log = Log()
        self.config = Config()
        self.kv = Kv()
        self.events = Events()
        self.http = Http()
        self.memory = Memory()
        self.clock = Clock()

    # The bus-module contract. Registration is open during on_load only.

    def register_rpc(self, name, fn):
        """Routes the bus RPC `name` to `fn(payload) -> reply` (JSON values)."""
        from . import module

        module.register_rpc(name, fn)

    def register_event_handler(self, event_type, fn):
        """Calls `fn(event)` for each event whose type matches `event_type`
        (`*`, `prefix.*` or exact); `event` is a dict with its `type`."""
        from . import module

        module.register_event_handler(event_type, fn)

    def publish(self, event, payload=None):
        """Publishes `event`: a dict with a `type` (the topic; the dict is
        the payload), or a topic with a JSON-able payload."""
        if isinstance(event, str):
            topic, body = event, {} if payload is None else payload
        elif isinstance(event, dict) and isinstance(event.get("type"), str):
            topic, body = event["type"], event
        else:
            raise TypeError("publish takes a dict with a 'type' or a topic and a payload")
        self.events.publish(topic, _json(body))

    def cache_get(self, namespace, key):
        """The value cached at `key` in `namespace` (as it was put), or None."""
        raw = _b().cache_get(namespace, str(key))
        return None if raw is None else json.loads(bytes(raw))

    def cache_put(self, namespace, key, value):
        """Caches a JSON-able value; it survives restarts and reloads."""
        _b().cache_put(namespace, str(key), _json(value).encode())

    def cache_clear(self, namespace):
        """Drops the namespace; returns how many entries it had."""
        return int(_b().cache_clear(namespace))


host = Host()

# PRX's SDK has these at module level: `from prx_pdk.host import kv`.
log = host.log
config = host.config
kv = host.kv
events = host.events
http = host.http
memory = host.memory
clock = host.clock
