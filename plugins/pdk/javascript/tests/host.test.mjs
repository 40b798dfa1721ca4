import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";
import { FakeHost } from "../src/testing.js";
import { config, events, host, http, HostError, HostUnavailable, kv, log, memory } from "../src/index.js";

let fake;
beforeEach(() => {
  fake = new FakeHost({ config: { greeting: "Hi" }, responses: { "GET https://api.example.com/x": [200, '{"ok":true}'] } }).install();
});
afterEach(() => fake.uninstall());

const text = (bytes) => new TextDecoder().decode(bytes);

test("log and config reach the host", () => {
  log.info("one");
  log.log("warn", 2);
  assert.deepEqual(fake.logs, [["info", "one"], ["warn", "2"]]);
  assert.throws(() => log.log("loud", "x"), /unknown log level "loud"/);
  assert.equal(config.get("greeting"), "Hi");
  assert.equal(config.get("absent"), undefined);
  assert.equal(config.getOr("absent", "dflt"), "dflt");
  assert.deepEqual(config.getAll(), [["greeting", "Hi"]]);
});

test("kv stores bytes, text and JSON, and increments", () => {
  kv.set("b", new Uint8Array([1, 2]));
  kv.set("s", "text");
  kv.setJson("j", { a: [1] });
  assert.deepEqual(kv.get("b"), new Uint8Array([1, 2]));
  assert.equal(kv.getString("s"), "text");
  assert.equal(kv.getString("b"), text(new Uint8Array([1, 2])));
  assert.deepEqual(kv.getJson("j"), { a: [1] });
  assert.equal(kv.getJson("s"), undefined);
  assert.equal(kv.get("absent"), undefined);
  assert.deepEqual(kv.listKeys(), ["b", "j", "s"]);
  assert.equal(kv.delete("b"), true);
  assert.equal(kv.delete("b"), false);
  assert.equal(kv.increment("n"), 1);
  assert.equal(kv.increment("n", 41), 42);
  assert.equal(kv.getJson("n"), 42);
  assert.throws(() => kv.increment("n", 1.5), TypeError);
  assert.throws(() => kv.increment("s"), HostError);
});

test("a refused permission names the permission to declare", () => {
  fake.uninstall();
  fake = new FakeHost({ permissions: [] }).install();
  assert.throws(() => kv.get("x"), (e) => e instanceof HostUnavailable && /declare the `kv` permission/.test(e.message));
  assert.throws(() => events.publish("a.b", {}), HostUnavailable);
});

test("a quota is a HostError with the host's reason", () => {
  fake.uninstall();
  fake = new FakeHost({ maxKvBytes: 10 }).install();
  kv.set("k", "12345");
  assert.throws(() => kv.set("k2", "123456789"), (e) => e instanceof HostError && /quota/.test(e.message));
});

test("events publish JSON and subscribe by pattern", () => {
  events.publish("a.b", { n: 1 });
  events.publish("a.c");
  events.publishJson("a.d", [1]);
  assert.deepEqual(fake.published, [["a.b", '{"n":1}'], ["a.c", "{}"], ["a.d", "[1]"]]);
  const id = events.subscribe("a.*");
  assert.equal(typeof id, "bigint");
  events.unsubscribe(id);
  assert.throws(() => events.unsubscribe(id), HostError);
});

test("http answers with helpers, and sends JSON", () => {
  const r = http.get("https://api.example.com/x", { Accept: "application/json" });
  assert.equal(r.status, 200);
  assert.deepEqual(r.json(), { ok: true });
  assert.equal(http.bodyText(r), '{"ok":true}');
  assert.deepEqual(fake.requests[0].slice(0, 3), ["GET", "https://api.example.com/x", [["Accept", "application/json"]]]);
  assert.throws(() => http.postJson("https://api.example.com/y", { a: 1 }), /no response set/);
  const [method, , headers, body] = fake.requests[1];
  assert.equal(method, "POST");
  assert.deepEqual(headers, [["Content-Type", "application/json"]]);
  assert.equal(text(body), '{"a":1}');
});

test("memory stores and recalls", () => {
  const id = memory.store("the sky is blue", "fact");
  memory.store("grass is green");
  assert.deepEqual(memory.recall("sky"), [{ id, text: "the sky is blue", category: "fact", importance: 0.5 }]);
});

test("the cache holds JSON values by namespace", () => {
  host.cachePut("ns", "k", { v: 1 });
  host.cachePut("ns", 2, [2]);
  host.cachePut("other", "k", "x");
  assert.deepEqual(host.cacheGet("ns", "k"), { v: 1 });
  assert.deepEqual(host.cacheGet("ns", "2"), [2]);
  assert.equal(host.cacheGet("ns", "absent"), undefined);
  assert.equal(host.cacheClear("ns"), 2);
  assert.equal(host.cacheGet("ns", "k"), undefined);
  assert.equal(host.cacheGet("other", "k"), "x");
});

test("host.publish takes an event with a type, or a topic and a payload", () => {
  host.publish({ type: "x.y", n: 1 });
  host.publish("x.z", { m: 2 });
  assert.deepEqual(fake.published, [["x.y", '{"type":"x.y","n":1}'], ["x.z", '{"m":2}']]);
  assert.throws(() => host.publish({ n: 1 }), TypeError);
});
