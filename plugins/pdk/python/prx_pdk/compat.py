"""PRX's own Python SDK names, so plugins written against it build here
unchanged: the decorators `prx_tool`, `prx_hook`, `prx_middleware` and
`prx_cron`, and the results `ToolResult` (`PluginResult`) and
`MiddlewareAction`, with the behaviour that SDK gives them.

    @prx_tool(name="json_formatter", description="...", params={...})
    def execute(args: dict) -> ToolResult:
        return ToolResult.ok("...")

Each registers the function as this SDK's decorators do; a plugin uses
one style or the other for a capability, not both.
"""

import json
from dataclasses import dataclass
from typing import Optional

from . import worlds
from .errors import Blocked
# PRX names the host's HTTP response HttpResponse; it is this SDK's Response.
from .host import Response as HttpResponse  # noqa: F401


@dataclass
class ToolSpec:
    name: str
    description: str
    parameters_schema: str

    def to_wit(self):
        return {"name": self.name, "description": self.description, "parameters_schema": self.parameters_schema}


@dataclass
class PluginResult:
    """A tool's result: `ToolResult.ok(output)` or `ToolResult.err(error)`."""

    success: bool
    output: str
    error: Optional[str] = None

    @classmethod
    def ok(cls, output):
        return cls(success=True, output=str(output), error=None)

    @classmethod
    def err(cls, error):
        return cls(success=False, output="", error=str(error))

    def to_wit(self):
        return {"success": self.success, "output": self.output, "error": self.error}

    def __getitem__(self, key):  # PRX's examples read results as dicts
        return self.to_wit()[key]


ToolResult = PluginResult


class MiddlewareAction:
    """`MiddlewareAction.continue_(data)` passes data (JSON text) on;
    `MiddlewareAction.block(reason)` stops the chain with the reason."""

    __slots__ = ("_kind", "_data")

    def __init__(self, kind, data):
        self._kind = kind
        self._data = data

    @classmethod
    def continue_(cls, data):
        return cls("continue", data)

    @classmethod
    def block(cls, reason):
        return cls("block", reason)

    @property
    def kind(self):
        return self._kind

    @property
    def data(self):
        return self._data

    def is_continue(self):
        return self._kind == "continue"

    def is_block(self):
        return self._kind == "block"

    def to_wit(self):
        return self._data

    def __repr__(self):
        return f"MiddlewareAction.{self._kind}({self._data!r})"


@dataclass
class CronContext:
    triggered_at_ms: int = 0
    plugin_name: str = ""


def _tool_output(result):
    """A PRX tool's return: a `PluginResult`, a dict of one, or text."""
    if isinstance(result, PluginResult):
        return result
    if isinstance(result, dict) and "success" in result:
        return PluginResult(bool(result["success"]), str(result.get("output", "")), result.get("error"))
    return PluginResult.ok(result if isinstance(result, str) else json.dumps(result))


def prx_tool(*, name, description, params):
    """A tool: `fn(args: dict) -> ToolResult | str`. `params` is the JSON
    Schema of the arguments (a dict or JSON text)."""
    schema = json.loads(params) if isinstance(params, str) else params

    def decorator(fn):
        def run(args):
            return _tool_output(fn(args))

        run.__name__ = getattr(fn, "__name__", "execute")
        worlds.register_entry("tool", worlds.Entry(label=run.__name__, target=run, name=name, description=description, schema=schema, raw=True))
        return fn

    return decorator


def prx_hook(*, events=None):
    """A hook: `fn(event: str, payload)`; with `events`, only those events
    reach it (the others are ignored, as PRX's SDK does)."""
    wanted = list(events or [])

    def decorator(fn):
        def run(event, payload):
            if not wanted or event in wanted:
                fn(event, payload)

        run.__name__ = getattr(fn, "__name__", "on_event")
        worlds.register_entry("hook", worlds.Entry(label=run.__name__, target=run))
        return fn

    return decorator


def prx_middleware(*, priority=50):
    """Middleware: `fn(stage: str, data) -> MiddlewareAction | str`. The
    priority is the manifest's (`[[capabilities]] priority`); here it is
    only recorded."""

    def decorator(fn):
        def run(stage, data):
            result = fn(stage, data)
            if isinstance(result, MiddlewareAction):
                if result.is_block():
                    raise Blocked(result.data)
                return result.data if isinstance(result.data, str) else json.dumps(result.data)
            return result if isinstance(result, str) else json.dumps(result)

        run.__name__ = getattr(fn, "__name__", "process")
        run.priority = priority
        worlds.register_entry("middleware", worlds.Entry(label=run.__name__, target=run, raw=True))
        return fn

    return decorator


def prx_cron(fn=None):
    """A cron job: `fn() -> str | None`; `@prx_cron` or `@prx_cron()`."""

    def decorator(target):
        worlds.register_entry("cron", worlds.Entry(label=getattr(target, "__name__", "run"), target=target))
        return target

    return decorator(fn) if fn is not None else decorator
