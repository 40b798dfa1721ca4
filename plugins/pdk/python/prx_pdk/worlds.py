"""Authoring helpers for the PRX worlds, and the export classes that
componentize-py binds to them.

    @tool(name="hello", description="Greets someone",
          schema={"type": "object", "properties": {"name": {"type": "string"}}})
    def hello(args):
        return f"Hello, {args.get('name', 'world')}!"

One function (or class, for storage) per capability. Whatever it raises
becomes an error for the caller (`Type: message`) and a traceback in the
plugin's log; a call never hangs on a Python exception.
"""

import importlib
import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import List, Optional

from . import module as _module
from .errors import Blocked, Err, report

_registered = {}

# The generated export records (only inside a component).
_exports = {}
for _name in ("tool_exports", "provider_exports", "storage_exports", "module_exports"):
    try:
        _exports[_name] = importlib.import_module("wit_world.exports." + _name)
    except ImportError:
        pass


def _record(interface, record, /, **fields):
    generated = _exports.get(interface)
    return getattr(generated, record)(**fields) if generated else SimpleNamespace(**fields)


def _json(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def register_entry(kind, entry):
    if kind in _registered:
        raise TypeError(f"a plugin has one {kind}: {_registered[kind].label} and {entry.label} are both registered")
    _registered[kind] = entry


@dataclass
class Entry:
    label: str
    target: object
    name: str = ""
    description: str = ""
    schema: Optional[dict] = None
    # Returns what the export returns as it is: a tool's PluginResult, a
    # middleware's JSON text (PRX's decorators, prx_pdk.compat).
    raw: bool = False


def _decorator(kind, fn, **fields):
    def wrap(target):
        register_entry(kind, Entry(label=getattr(target, "__name__", repr(target)), target=target, **fields))
        return target

    return wrap(fn) if fn is not None else wrap


def tool(name, description="", schema=None):
    """A tool: `fn(args: dict) -> str | JSON-able`. `schema` is the JSON
    Schema of its arguments (default: any object)."""
    return _decorator("tool", None, name=name, description=description, schema=schema or {"type": "object"})


def hook(fn=None):
    """A hook: `fn(event: str, payload)` for each event its manifest
    subscribes to; `payload` is the decoded JSON."""
    return _decorator("hook", fn)


def middleware(fn=None):
    """Middleware: `fn(stage: str, data) -> data` (None keeps the data);
    raising blocks the chain."""
    return _decorator("middleware", fn)


def cron(fn=None):
    """A cron job: `fn() -> str | None`, run on the manifest's schedule."""
    return _decorator("cron", fn)


def provider(name):
    """A model provider: `fn(messages, model, temperature) -> str |
    ChatResponse`; `messages` are `ChatMessage`s."""
    return _decorator("provider", None, name=name)


def storage(name):
    """A memory backend: a class with `store(key, content, category,
    session_id)`, `recall(query, limit, session_id) -> [StoredMemory]`,
    `forget(key) -> bool`, `count() -> int` and optionally `health() ->
    bool`. One instance serves every call."""
    return _decorator("storage", None, name=name)


@dataclass
class ChatMessage:
    role: str
    content: str


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass
class ChatResponse:
    text: Optional[str] = None
    tool_calls: List[ToolCall] = field(default_factory=list)


@dataclass
class StoredMemory:
    id: str
    key: str
    content: str
    category: str
    timestamp: str
    score: Optional[float] = None


def registered(kind):
    entry = _registered.get(kind)
    if entry is None:
        raise RuntimeError(f"plugin.py registers no {kind}")
    return entry


def finish(plugin_module, capabilities):
    """Build-time check that plugin.py provides every capability its
    manifest declares (the build passes them); finds a module class."""
    for kind in capabilities or ():
        if kind == "module":
            _module.find(plugin_module)
        elif kind not in _registered:
            how = {"tool": "@tool(name=..., description=..., schema=...)", "provider": '@provider("name")', "storage": '@storage("name") on a class'}.get(kind, f"@{kind}")
            raise TypeError(f"plugin.toml declares a {kind} but plugin.py registers none: decorate it with prx_pdk.{how}")


def _guard(where, call, *args):
    """Runs a plugin function; an exception becomes the WIT error.

    MemoryError is the exception: the plugin reached its memory limit, and
    the interpreter is let fail as a whole (the worker reports the limit,
    as for any plugin, and starts a fresh instance)."""
    try:
        return call(*args)
    except MemoryError as e:
        report(e, where)
        raise
    except Blocked as e:
        raise Err(str(e)) from None
    except BaseException as e:
        raise Err(report(e, where)) from None


class ToolExports:
    def get_spec(self):
        entry = registered("tool")
        return _record("tool_exports", "ToolSpec", name=entry.name, description=entry.description, parameters_schema=_json(entry.schema))

    def execute(self, args):
        entry = registered("tool")
        try:
            parsed = json.loads(args) if args.strip() else {}
            out = entry.target(parsed)
            if entry.raw:
                return _record("tool_exports", "PluginResult", success=out.success, output=out.output, error=out.error)
            output = out if isinstance(out, str) else _json(out)
            return _record("tool_exports", "PluginResult", success=True, output=output, error=None)
        except MemoryError as e:
            report(e, f"tool {entry.name}")
            raise
        except BaseException as e:
            return _record("tool_exports", "PluginResult", success=False, output="", error=report(e, f"tool {entry.name}"))


class HookExports:
    def on_event(self, event, payload_json):
        def run():
            try:
                payload = json.loads(payload_json)
            except ValueError:
                payload = payload_json
            registered("hook").target(event, payload)

        _guard(f"hook on {event}", run)


class MiddlewareExports:
    def process(self, stage, data_json):
        def run():
            entry = registered("middleware")
            data = json.loads(data_json)
            out = entry.target(stage, data)
            if entry.raw:
                return out
            return data_json if out is None else _json(out)

        return _guard(f"middleware at {stage}", run)


class CronExports:
    def run(self):
        def run():
            out = registered("cron").target()
            return "ok" if out is None else str(out)

        return _guard("cron run", run)


class ProviderExports:
    def name(self):
        return registered("provider").name

    def chat(self, messages, model, temperature):
        def run():
            history = [ChatMessage(m.role, m.content) for m in messages]
            out = registered("provider").target(history, model, temperature)
            if isinstance(out, str):
                out = ChatResponse(text=out)
            calls = [_record("provider_exports", "ToolCall", id=c.id, name=c.name, arguments=c.arguments) for c in out.tool_calls]
            return _record("provider_exports", "ChatResponse", text=out.text, tool_calls=calls)

        return _guard(f"provider {model}", run)


_stores = {}


def _store():
    entry = registered("storage")
    if "instance" not in _stores:
        _stores["instance"] = entry.target()
    return _stores["instance"]


class StorageExports:
    def name(self):
        return registered("storage").name

    def store_memory(self, key, content, category, session_id):
        _guard("storage store", lambda: _store().store(key, content, category, session_id))

    def recall_memory(self, query, limit, session_id):
        def run():
            found = _store().recall(query, limit, session_id)
            return [
                _record("storage_exports", "MemoryEntry", id=m.id, key=m.key, content=m.content, category=m.category, timestamp=m.timestamp, score=m.score)
                for m in (StoredMemory(**m) if isinstance(m, dict) else m for m in found)
            ]

        return _guard("storage recall", run)

    def forget_memory(self, key):
        return _guard("storage forget", lambda: bool(_store().forget(key)))

    def count_memories(self):
        return _guard("storage count", lambda: int(_store().count()))

    def health_check(self):
        try:
            check = getattr(_store(), "health", None)
            return True if check is None else bool(check())
        except BaseException as e:
            report(e, "storage health check")
            return False


class ModuleExports:
    def on_load(self):
        _guard("on_load", _module.load)

    def on_rpc(self, name, payload_json):
        return _guard(f"rpc {name}", _module.rpc, name, payload_json)

    def on_event(self, topic, payload_json):
        _guard(f"event handler for {topic}", _module.event, topic, payload_json)

    def describe(self):
        status, stats = _module.describe()
        return _record(
            "module_exports", "ModuleInfo", status=status, stats=[_record("module_exports", "Stat", name=n, value=v) for n, v in stats]
        )
