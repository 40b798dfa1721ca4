"""py-worlds: every capability in one Python plugin. Each answers with
something that shows the SDK carried the call both ways (records, lists,
options, errors)."""

from prx_host import ModuleInfo, Stat
from prx_pdk import ChatResponse, StoredMemory, ToolCall, cron, hook, host, middleware, provider, storage, tool


@tool(name="py_worlds", description="Echoes its arguments", schema={"type": "object"})
def echo(args):
    return {"echo": args}


@hook
def on_event(topic, payload):
    host.kv.increment(f"seen:{topic}")


@middleware
def process(stage, data):
    if isinstance(data, dict) and data.get("block"):
        raise PermissionError("blocked on request")
    return {**data, "py_worlds": stage} if isinstance(data, dict) else data


@cron
def run():
    return f"cron run {host.kv.increment('runs')}"


@provider("py-worlds")
def chat(messages, model, temperature):
    if model == "tools":
        return ChatResponse(tool_calls=[ToolCall("call-1", "py_worlds", '{"x":1}')])
    return f"{model}@{temperature}: {messages[-1].content}"


@storage("py-worlds")
class Memories:
    def store(self, key, content, category, session_id):
        host.kv.set_json(f"mem:{key}", [content, category, session_id])

    def recall(self, query, limit, session_id):
        found = []
        for key in host.kv.list_keys("mem:"):
            content, category, _ = host.kv.get_json(key)
            if query.lower() in content.lower():
                found.append(StoredMemory(key[4:], key[4:], content, category, "2026-01-01T00:00:00Z", 1.0))
        return found[:limit]

    def forget(self, key):
        return host.kv.delete(f"mem:{key}")

    def count(self):
        return len(host.kv.list_keys("mem:"))


class Worlds:
    def on_load(self, host, config=None):
        self.events = 0
        host.register_rpc("worlds.echo", lambda payload: payload)
        host.register_event_handler("worlds.*", self._on_event)

    def _on_event(self, event):
        self.events += 1

    def describe(self):
        return ModuleInfo(status="LOADED", stats=[Stat("events", lambda: self.events)])
