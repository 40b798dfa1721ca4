import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";
import { FakeHost } from "../src/testing.js";
import { ModuleInfo, Stat, host } from "../src/index.js";

class Counter {
  onLoad(h, config) {
    this.config = config;
    this.n = 0;
    h.registerRpc("counter.add", (payload) => (this.n += payload.by));
    h.registerEventHandler("ticks.*", (event) => (this.n += event.type === "ticks.big" ? 10 : 1));
  }
  describe() {
    return new ModuleInfo("LOADED", [new Stat("n", () => this.n), ["mode", "test"]]);
  }
}

let fake;
beforeEach(() => {
  fake = new FakeHost({ config: { mode: "x" } }).install();
});
afterEach(() => fake.uninstall());

test("a module registers in onLoad, answers RPCs and events, and describes itself", () => {
  const instance = fake.load(Counter);
  assert.deepEqual(instance.config, { mode: "x" });
  assert.deepEqual(fake.rpcs, ["counter.add"]);
  assert.equal(fake.rpc("counter.add", { by: 2 }), 2);
  fake.deliver("ticks.small", {});
  fake.deliver("ticks.big", "not an object");
  fake.deliver("other.topic", {});
  assert.deepEqual(fake.describe(), ["LOADED", [["n", "13"], ["mode", "test"]]]);
  assert.throws(() => fake.rpc("counter.nope", {}), /no RPC named "counter.nope"/);
});

test("registering outside onLoad is refused", () => {
  fake.load(Counter);
  assert.throws(() => host.registerRpc("late", () => 1), /only possible in onLoad/);
});

test("a failing describe shows ERROR with the exception", () => {
  class Broken {
    onLoad() {}
    describe() {
      throw new Error("no stats");
    }
  }
  fake.load(Broken);
  assert.deepEqual(fake.describe(), ["ERROR", [["error", "Error: no stats"]]]);
});

test("a module class is found by default export, MODULE, or as the only one", () => {
  const plain = { Counter };
  assert.doesNotThrow(() => fake.exports(plain, ["module"]));
  assert.doesNotThrow(() => fake.exports({ default: Counter, Other: Counter }, ["module"]));
  assert.throws(() => fake.exports({ A: Counter, B: Counter }, ["module"]), /found: Counter, Counter/);
  assert.doesNotThrow(() => fake.exports({ A: Counter, B: Counter, MODULE: Counter }, ["module"]));
});

test("async RPC and event handlers are awaited", async () => {
  class Later {
    onLoad(h) {
      this.seen = [];
      h.registerRpc("later.add", async ({ a, b }) => a + b);
      h.registerEventHandler("later.*", async (event) => {
        await Promise.resolve();
        this.seen.push(event.type);
      });
    }
  }
  const later = fake.load(Later);
  const { moduleExports: m } = fake.exports({ Later }, ["module"]);
  assert.equal(await m.onRpc("later.add", '{"a":1,"b":2}'), "3");
  await m.onEvent("later.tick", "{}");
  assert.deepEqual(later.seen, ["later.tick"]);
});
