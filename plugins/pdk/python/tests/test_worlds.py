import json

import pytest

from prx_pdk import ChatResponse, StoredMemory, ToolCall, cron, hook, host, middleware, provider, storage, tool, worlds
from prx_pdk.errors import Err
from prx_pdk.testing import FakeHost


def test_tool_spec_and_results():
    @tool(name="add", description="Adds", schema={"type": "object", "required": ["a", "b"]})
    def add(args):
        return {"sum": args["a"] + args["b"]}

    exports = worlds.ToolExports()
    spec = exports.get_spec()
    assert (spec.name, spec.description) == ("add", "Adds")
    assert json.loads(spec.parameters_schema)["required"] == ["a", "b"]
    with FakeHost():
        ok = exports.execute('{"a": 1, "b": 2}')
        assert (ok.success, ok.output, ok.error) == (True, '{"sum":3}', None)


def test_a_tool_exception_becomes_its_error_and_a_traceback_in_the_log():
    @tool(name="fails")
    def fails(args):
        raise KeyError("b")

    with FakeHost() as fake:
        result = worlds.ToolExports().execute("{}")
        assert (result.success, result.output, result.error) == (False, "", "KeyError: 'b'")
        level, line = fake.logs[-1]
        assert level == "error" and "tool fails raised KeyError" in line and "Traceback" in line
        bad = worlds.ToolExports().execute("{not json")
        assert bad.error.startswith("JSONDecodeError: ")


def test_even_system_exit_is_an_error_not_a_hang():
    @tool(name="exits")
    def exits(args):
        raise SystemExit(3)

    with FakeHost():
        assert worlds.ToolExports().execute("{}").error == "SystemExit: 3"


def test_hook_middleware_and_cron():
    seen = []

    @hook
    def on_event(topic, payload):
        if payload == {"bad": True}:
            raise ValueError("bad event")
        seen.append((topic, payload))

    @middleware
    def process(stage, data):
        if stage == "outbound":
            return None
        return {**data, "stage": stage}

    @cron()
    def run():
        return None

    with FakeHost():
        worlds.HookExports().on_event("a.b", '{"x": 1}')
        assert seen == [("a.b", {"x": 1})]
        with pytest.raises(Err) as e:
            worlds.HookExports().on_event("a.b", '{"bad": true}')
        assert e.value.value == "ValueError: bad event"
        assert worlds.MiddlewareExports().process("inbound", '{"t": 1}') == '{"t":1,"stage":"inbound"}'
        assert worlds.MiddlewareExports().process("outbound", '{"t": 1}') == '{"t": 1}'
        assert worlds.CronExports().run() == "ok"


def test_provider():
    @provider("echo-llm")
    def chat(messages, model, temperature):
        if model == "tools":
            return ChatResponse(tool_calls=[ToolCall("1", "clock", "{}")])
        return f"{model}:{messages[-1].content}"

    class Message:
        role, content = "user", "hi"

    exports = worlds.ProviderExports()
    assert exports.name() == "echo-llm"
    with FakeHost():
        reply = exports.chat([Message()], "small", 0.2)
        assert reply.text == "small:hi" and reply.tool_calls == []
        calls = exports.chat([Message()], "tools", 0.2).tool_calls
        assert [(c.id, c.name, c.arguments) for c in calls] == [("1", "clock", "{}")]


def test_storage():
    @storage("dict-store")
    class Store:
        def __init__(self):
            self.items = {}

        def store(self, key, content, category, session_id):
            self.items[key] = (content, category)

        def recall(self, query, limit, session_id):
            return [
                {"id": k, "key": k, "content": c, "category": cat, "timestamp": "t"}
                for k, (c, cat) in self.items.items()
                if query in c
            ][:limit]

        def forget(self, key):
            return self.items.pop(key, None) is not None

        def count(self):
            return len(self.items)

        def health(self):
            raise OSError("disk gone")

    exports = worlds.StorageExports()
    with FakeHost():
        exports.store_memory("k1", "the sky is blue", "fact", None)
        found = exports.recall_memory("sky", 3, None)
        assert [(m.key, m.content, m.score) for m in found] == [("k1", "the sky is blue", None)]
        assert exports.count_memories() == 1
        assert exports.forget_memory("k1") is True
        assert exports.health_check() is False
    assert StoredMemory("i", "k", "c", "cat", "t").score is None


def test_one_capability_of_a_kind_and_the_build_check():
    @tool(name="one")
    def one(args):
        return ""

    with pytest.raises(TypeError, match="a plugin has one tool"):
        tool(name="two")(lambda args: "")

    class Plugin:
        __name__ = "plugin"

    with pytest.raises(TypeError, match="declares a hook but plugin.py registers none"):
        worlds.finish(Plugin, ["tool", "hook"])
