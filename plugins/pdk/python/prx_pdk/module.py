"""The bus-module contract: a class with `on_load(self, host, config=None)`
that registers RPC and event handlers, and an optional `describe(self)`.

    class MyForecaster:
        name = "myforecaster"

        def on_load(self, host, config=None):
            host.register_rpc("forecast", self._forecast)

        def _forecast(self, payload):
            ...

        def describe(self):
            return ModuleInfo(status="LOADED", stats=[Stat("model", lambda: "...")])

The class is found in plugin.py at build time (the one class there with an
`on_load`, or the one named by `MODULE = ...`); the host creates one
instance per worker and calls `on_load` before anything else.
"""

import inspect
import json

from . import _backend
from .errors import report
from .info import ModuleInfo, Stat

_rpcs = {}
_handlers = []
_state = {"class": None, "instance": None, "loading": False}


def use(cls):
    """Makes `cls` the plugin's module (the build does this for you)."""
    if not inspect.isclass(cls) or not callable(getattr(cls, "on_load", None)):
        raise TypeError(f"{cls!r} is not a module class: it needs an on_load(self, host, config=None) method")
    _state["class"] = cls
    return cls


def find(namespace, source="plugin.py"):
    """The module class defined in `namespace` (a module object)."""
    chosen = getattr(namespace, "MODULE", None)
    if chosen is not None:
        return use(chosen)
    found = [
        value
        for value in vars(namespace).values()
        if inspect.isclass(value)
        and value.__module__ == namespace.__name__
        and callable(getattr(value, "on_load", None))
    ]
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise TypeError(
            f"{source} must define exactly one module class with an on_load(self, host, config=None) "
            f"method (found: {names}); with several, set MODULE = TheClass"
        )
    return use(found[0])


def _require_loading(what):
    if not _state["loading"]:
        raise RuntimeError(f"{what} is only possible in on_load: the host routes what a module registers when it loads")


def register_rpc(name, fn):
    _require_loading("register_rpc")
    if not callable(fn):
        raise TypeError(f"register_rpc({name!r}, ...) needs a function of the payload")
    _backend.current().rpc_register(name)
    _rpcs[name] = fn


def register_event_handler(pattern, fn):
    _require_loading("register_event_handler")
    if not callable(fn):
        raise TypeError(f"register_event_handler({pattern!r}, ...) needs a function of the event")
    _backend.current().events_subscribe(pattern)
    _handlers.append((pattern, fn))


def matches(pattern, topic):
    """`*` matches every topic, `a.*` everything under `a.`, anything else
    exactly one topic (the host's rule)."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return topic.startswith(pattern[:-1])
    return pattern == topic


def _accepts_config(method):
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def load():
    """on-load: creates the instance and runs its on_load."""
    from .host import host

    cls = _state["class"]
    if cls is None:
        raise RuntimeError("no module class: plugin.py defines none (build it with prx-plugin build)")
    instance = cls()
    config = dict(_backend.current().config_get_all())
    _state["loading"] = True
    try:
        if _accepts_config(instance.on_load):
            instance.on_load(host, config)
        else:
            instance.on_load(host)
    finally:
        _state["loading"] = False
    _state["instance"] = instance


def rpc(name, payload_json):
    """on-rpc: the handler's reply as JSON."""
    fn = _rpcs.get(name)
    if fn is None:
        raise LookupError(f"no RPC named {name!r} is registered by this module")
    payload = json.loads(payload_json) if payload_json.strip() else None
    return json.dumps(fn(payload), separators=(",", ":"), ensure_ascii=False)


def event(topic, payload_json):
    """on-event: every handler whose pattern matches."""
    try:
        payload = json.loads(payload_json)
    except ValueError:
        payload = payload_json
    event = dict(payload) if isinstance(payload, dict) else {"payload": payload}
    event.setdefault("type", topic)
    for pattern, fn in list(_handlers):
        if matches(pattern, topic):
            fn(event)


def describe():
    """describe: the instance's ModuleInfo with every stat evaluated; a
    failing describe shows as status `ERROR` with the exception."""
    instance = _state["instance"]
    method = getattr(instance, "describe", None)
    if method is None:
        return "LOADED" if instance is not None else "NOT LOADED", []
    try:
        info = method()
        if not isinstance(info, ModuleInfo):
            raise TypeError(f"describe() returned {type(info).__name__}, not ModuleInfo")
        stats = []
        for stat in info.stats:
            stat = stat if isinstance(stat, Stat) else Stat(*stat)
            stats.append((stat.name, stat.text()))
        return info.status, stats
    except Exception as e:
        return "ERROR", [("error", report(e, "describe"))]
