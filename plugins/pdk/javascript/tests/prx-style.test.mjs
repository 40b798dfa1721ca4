// A plugin in PRX's style alone (nothing registered): what it lacks is
// named with the way to write it.
import assert from "node:assert/strict";
import { test } from "node:test";
import { FakeHost } from "../src/testing.js";
import { middlewareBlock, middlewareContinue, resultErr, resultOk } from "../src/index.js";

test("a missing capability names both ways to write it", () => {
  const fake = new FakeHost().install();
  try {
    assert.throws(() => fake.exports({}, ["tool"]), /plugin.toml declares a tool but the plugin provides none: export const t = tool\(/);
    assert.throws(() => fake.exports({ getSpec() {} }, ["tool"]), /provides none/);
    const raw = { toolExports: { getSpec: () => ({}), execute: () => ({}) } };
    assert.equal(fake.exports(raw, ["tool"]).toolExports, raw.toolExports);
    assert.throws(() => fake.exports({ onEvent: 1 }, ["hook"]), /hook\(\(event, payload\)/);
  } finally {
    fake.uninstall();
  }
});

test("PRX's style: getSpec and execute exported, a PluginResult back", () => {
  const fake = new FakeHost().install();
  const plugin = {
    getSpec: () => ({ name: "md", description: "d", parametersSchema: "{}" }),
    execute: (argsJson) => (argsJson === "{}" ? resultOk("fine") : argsJson === "throw" ? JSON.parse("{") : resultErr("no")),
  };
  const { toolExports: t } = fake.exports(plugin, ["tool"]);
  assert.deepEqual(t.getSpec(), plugin.getSpec());
  assert.deepEqual(t.execute("{}"), { success: true, output: "fine", error: undefined });
  assert.deepEqual(t.execute("x"), { success: false, output: "", error: "no" });
  assert.equal(t.execute("throw").error.startsWith("SyntaxError"), true);
  fake.uninstall();
});

test("PRX's middleware actions: continue unwraps, block (returned or thrown) blocks with its reason", () => {
  const fake = new FakeHost().install();
  const plugin = {
    process(stage, dataJson) {
      if (stage === "inbound") return JSON.stringify(middlewareContinue(dataJson));
      if (stage === "outbound") throw new Error(JSON.stringify(middlewareBlock("rate limited")));
      if (stage === "llm_request") return JSON.stringify(middlewareBlock("too long"));
      return dataJson;
    },
  };
  const { middlewareExports: m } = fake.exports(plugin, ["middleware"]);
  assert.equal(m.process("inbound", '{"a":1}'), '{"a":1}');
  assert.equal(m.process("llm_response", '{"action":"other"}'), '{"action":"other"}');
  assert.throws(() => m.process("outbound", "{}"), (e) => e === "rate limited");
  assert.throws(() => m.process("llm_request", "{}"), (e) => e === "too long");
  fake.uninstall();
});


test("the engine's out of memory is not a result: the call traps and the host reports the limit", () => {
  const fake = new FakeHost().install();
  const plugin = {
    getSpec: () => ({ name: "hog", description: "", parametersSchema: "{}" }),
    execute: () => {
      throw "out of memory";
    },
    process: () => {
      throw new Error("out of memory");
    },
  };
  const { toolExports: t, middlewareExports: m } = fake.exports(plugin, ["tool", "middleware"]);
  assert.throws(() => t.execute("{}"), (e) => e === "out of memory");
  assert.throws(() => m.process("inbound", "{}"), (e) => e instanceof Error && e.message === "out of memory");
  assert.match(fake.logs.at(-1)[1], /^middleware at inbound threw Error: out of memory/);
  fake.uninstall();
});

test("PRX's middleware helpers as objects, and a thrown continue, do what they say", () => {
  const fake = new FakeHost().install();
  const plugin = {
    process(stage, dataJson) {
      if (stage === "inbound") return middlewareBlock("as an object");
      if (stage === "outbound") return middlewareContinue('{"b":2}');
      throw new Error(JSON.stringify(middlewareContinue(dataJson)));
    },
  };
  const { middlewareExports: m } = fake.exports(plugin, ["middleware"]);
  assert.throws(() => m.process("inbound", "{}"), (e) => e === "as an object");
  assert.equal(m.process("outbound", "{}"), '{"b":2}');
  assert.equal(m.process("llm_request", '{"c":3}'), '{"c":3}');
  fake.uninstall();
});
