// The export objects as the host sees them: registered functions and
// PRX's style, results, and how exceptions become errors.
import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";
import { FakeHost } from "../src/testing.js";
import { cron, hook, middleware, provider, storage, tool } from "../src/index.js";

let fake;
beforeEach(() => {
  fake = new FakeHost().install();
});
afterEach(() => fake.uninstall());

// Registered once for this file (a plugin registers when its module loads).
const seen = [];
tool({ name: "echo", description: "echoes", schema: { type: "object" } }, (args) => {
  if (args.fail) throw new RangeError("asked to fail");
  return args.text ?? args;
});
hook((event, payload) => {
  if (event === "bad") throw new Error("hook broke");
  seen.push([event, payload]);
});
middleware((stage, data) => (stage === "keep" ? undefined : { ...data, stage }));
cron(async () => {
  await Promise.resolve();
  return "ran";
});
provider("p", (messages, model) => ({ text: `${model}:${messages.length}`, toolCalls: [{ id: "1", name: "t", arguments: { a: 1 } }] }));
storage("mem", {
  store() {},
  recall: () => [{ id: "1", key: "k", content: "c", category: "x", timestamp: "t", score: 2 }],
  forget: () => true,
  count: () => 3,
  health() {
    throw new Error("down");
  },
});

test("a registered tool: spec, JSON output, and an exception as a failed result", () => {
  const { toolExports: t } = fake.exports({}, ["tool"]);
  assert.deepEqual(t.getSpec(), { name: "echo", description: "echoes", parametersSchema: '{"type":"object"}' });
  assert.deepEqual(t.execute('{"text":"hi"}'), { success: true, output: "hi", error: undefined });
  assert.deepEqual(t.execute(""), { success: true, output: "{}", error: undefined });
  assert.deepEqual(t.execute('{"fail":true}'), { success: false, output: "", error: "RangeError: asked to fail" });
  assert.match(fake.logs.at(-1)[1], /^tool echo threw RangeError: asked to fail\nRangeError: asked to fail\n {4}at /);
  assert.equal(t.execute("{not json").success, false);
});

test("a registered hook gets decoded JSON; its exception is the error string", () => {
  const { hookExports: h } = fake.exports({}, ["hook"]);
  assert.equal(h.onEvent("a.b", '{"n":1}'), undefined);
  assert.equal(h.onEvent("a.c", "not json"), undefined);
  assert.deepEqual(seen, [["a.b", { n: 1 }], ["a.c", "not json"]]);
  assert.throws(() => h.onEvent("bad", "{}"), (e) => e === "Error: hook broke");
});

test("registered middleware: data out, undefined keeps it", () => {
  const { middlewareExports: m } = fake.exports({}, ["middleware"]);
  assert.equal(m.process("inbound", '{"a":1}'), '{"a":1,"stage":"inbound"}');
  assert.equal(m.process("keep", '{ "a" : 1 }'), '{ "a" : 1 }');
  assert.throws(() => m.process("inbound", "{bad"), (e) => typeof e === "string" && e.startsWith("SyntaxError"));
});

test("an async cron settles", async () => {
  const { cronExports: c } = fake.exports({}, ["cron"]);
  assert.equal(await c.run(), "ran");
});

test("a provider's answer and tool calls", () => {
  const { providerExports: p } = fake.exports({}, ["provider"]);
  assert.equal(p.name(), "p");
  assert.deepEqual(p.chat([{ role: "user", content: "x" }], "m", 0.5), {
    text: "m:1",
    toolCalls: [{ id: "1", name: "t", arguments: '{"a":1}' }],
  });
});

test("storage: entries, counts, and a failing health check is false", () => {
  const { storageExports: s } = fake.exports({}, ["storage"]);
  assert.equal(s.name(), "mem");
  assert.deepEqual(s.recallMemory("q", 5, undefined), [{ id: "1", key: "k", content: "c", category: "x", timestamp: "t", score: 2 }]);
  assert.equal(s.forgetMemory("k"), true);
  assert.equal(s.countMemories(), 3);
  assert.equal(s.healthCheck(), false);
});

test("a capability the plugin does not provide is refused with the way to provide it", () => {
  assert.throws(() => fake.exports({}, ["module"]), /exactly one module class/);
  const fresh = { run: undefined };
  assert.doesNotThrow(() => fake.exports(fresh, ["cron"]));
});
