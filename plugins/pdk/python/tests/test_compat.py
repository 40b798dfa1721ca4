"""PRX's own SDK names: plugins written against that SDK run as they are."""

import json

import pytest

from prx_pdk import MiddlewareAction, ToolResult, host, prx_cron, prx_hook, prx_middleware, prx_tool, worlds
from prx_pdk.errors import Err, HostError
from prx_pdk.testing import FakeHost


def test_prx_tool_returns_a_tool_result():
    @prx_tool(name="json_formatter", description="Formats JSON", params={"type": "object", "required": ["json_str"]})
    def execute(args):
        if not args.get("json_str"):
            return ToolResult.err("'json_str' is required")
        return ToolResult.ok(json.dumps(json.loads(args["json_str"]), indent=2))

    exports = worlds.ToolExports()
    spec = exports.get_spec()
    assert spec.name == "json_formatter"
    assert json.loads(spec.parameters_schema)["required"] == ["json_str"]
    with FakeHost():
        ok = exports.execute('{"json_str": "{\\"a\\":1}"}')
        assert (ok.success, ok.output, ok.error) == (True, '{\n  "a": 1\n}', None)
        refused = exports.execute("{}")
        assert (refused.success, refused.output, refused.error) == (False, "", "'json_str' is required")
    # The decorated function is the author's own, callable in their tests.
    assert execute({"json_str": "[]"})["success"] is True


def test_prx_tool_takes_a_schema_as_text_and_a_bare_string_result():
    @prx_tool(name="hi", description="Greets", params='{"type": "object"}')
    def execute(args):
        return "hello"

    with FakeHost():
        result = worlds.ToolExports().execute("{}")
    assert (result.success, result.output) == (True, "hello")


def test_prx_hook_sees_only_its_events():
    seen = []

    @prx_hook(events=["agent_start", "tool_call"])
    def on_event(event, payload):
        seen.append((event, payload))

    with FakeHost():
        worlds.HookExports().on_event("tool_call", '{"tool": "x"}')
        worlds.HookExports().on_event("other", "{}")
    assert seen == [("tool_call", {"tool": "x"})]


def test_prx_middleware_continues_with_data_and_blocks_with_the_reason_alone():
    @prx_middleware(priority=10)
    def process(stage, data):
        if data.get("spam"):
            return MiddlewareAction.block("spam is not allowed")
        data["enriched"] = True
        return MiddlewareAction.continue_(json.dumps(data))

    exports = worlds.MiddlewareExports()
    with FakeHost() as fake:
        assert json.loads(exports.process("inbound", '{"a": 1}')) == {"a": 1, "enriched": True}
        with pytest.raises(Err) as blocked:
            exports.process("inbound", '{"spam": true}')
        assert blocked.value.value == "spam is not allowed"
        assert fake.logs == []


def test_prx_cron_bare_and_called():
    @prx_cron
    def run():
        return "completed"

    assert worlds.CronExports().run() == "completed"


def test_the_host_module_names_and_clock_of_prx():
    from prx_pdk.host import clock, kv, log

    with FakeHost() as fake:
        log.info("x")
        assert kv.increment("event_count:tool_call", 1) == 1
        assert abs(clock.now_ms() - host.clock.now_ms()) < 1000
        assert host.clock.timezone() == "UTC"
        assert fake.logs == [("info", "x")]
    # PRX's examples catch RuntimeError around host calls.
    assert issubclass(HostError, RuntimeError)
