"""prx_pdk: write PRX plugins in Python.

    from prx_pdk import host, tool

    @tool(name="hello", description="Greets someone")
    def hello(args):
        host.log.info("hello called")
        return f"Hello, {args.get('name', 'world')}!"

PRX's own SDK names (`prx_tool`, `prx_hook`, `prx_middleware`,
`prx_cron`, `ToolResult`, `MiddlewareAction`) work as well.

`prx-plugin build` turns plugin.py into a WebAssembly component with
componentize-py, for the world its plugin.toml declares. See
docs/plugin-authors.md, "Python plugins".
"""

from .compat import (
    CronContext,
    HttpResponse,
    MiddlewareAction,
    PluginResult,
    ToolResult,
    ToolSpec,
    prx_cron,
    prx_hook,
    prx_middleware,
    prx_tool,
)
from .errors import HostError, HostUnavailable
from .host import Response, MemoryEntry, host
from .info import ModuleInfo, Stat
from .worlds import (
    ChatMessage,
    ChatResponse,
    StoredMemory,
    ToolCall,
    cron,
    hook,
    middleware,
    provider,
    storage,
    tool,
)

__version__ = "0.1.0"

__all__ = [
    # PRX's own SDK names (prx_pdk.compat)
    "CronContext",
    "HttpResponse",
    "MiddlewareAction",
    "PluginResult",
    "ToolResult",
    "ToolSpec",
    "prx_cron",
    "prx_hook",
    "prx_middleware",
    "prx_tool",
    # This SDK
    "ChatMessage",
    "ChatResponse",
    "HostError",
    "HostUnavailable",
    "MemoryEntry",
    "ModuleInfo",
    "Response",
    "Stat",
    "StoredMemory",
    "ToolCall",
    "cron",
    "hook",
    "host",
    "middleware",
    "provider",
    "storage",
    "tool",
]
