// A host in memory, for a plugin's own tests under Node (node --test).
//
//     import { FakeHost } from "@prx/pdk/testing";
//     import { hello } from "../src/plugin.js";
//
//     test("greets", () => {
//       const fake = new FakeHost({ config: { greeting: "Hi" } }).install();
//       assert.equal(hello({ name: "Ada" }), "Hi, Ada!");
//       assert.deepEqual(fake.logs.at(-1), ["info", "greeted Ada"]);
//       fake.uninstall();
//     });
//
// It keeps kv, cache and memory in maps, records logs, published events,
// subscriptions and RPC registrations, and answers HTTP from `responses`
// (`{ "GET https://api.example.com/x": [200, "body"] }`). Permissions can
// be withheld to test the refusals: `new FakeHost({ permissions: ["kv"] })`
// refuses everything else.

import { install } from "./backend.js";
import { HostError, HostUnavailable } from "./errors.js";
import { host } from "./index.js";
import * as mod from "./module.js";
import { exportsFor } from "./worlds.js";

export const ALL_PERMISSIONS = Object.freeze(["kv", "events", "http-outbound", "memory"]);

const encoder = new TextEncoder();

export class FakeHost {
  constructor({ config = {}, permissions = ALL_PERMISSIONS, responses = {}, maxKvBytes = 1024 * 1024 } = {}) {
    this.config = { ...config };
    this.permissions = new Set(permissions);
    this.responses = { ...responses };
    this.maxKvBytes = maxKvBytes;
    this.logs = [];
    this.kv = new Map();
    this.cache = new Map();
    this.published = [];
    this.subscriptions = new Map();
    this.rpcs = [];
    this.requests = [];
    this.memories = [];
    this.previous = null;
  }

  /** Makes this the host the SDK calls (and forgets a loaded module's
   * registrations); returns this. */
  install() {
    this.previous = install(this);
    mod.reset();
    return this;
  }

  /** Puts back the host that was there before `install`. */
  uninstall() {
    install(this.previous);
  }

  need(iface, permission) {
    if (!this.permissions.has(permission)) throw new HostUnavailable(iface, permission);
  }

  log(level, message) {
    this.logs.push([level, message]);
  }
  configGet(key) {
    return this.config[key];
  }
  configGetAll() {
    return Object.entries(this.config).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }
  kvGet(key) {
    this.need("kv", "kv");
    return this.kv.get(key);
  }
  kvSet(key, value) {
    this.need("kv", "kv");
    let used = 0;
    for (const [k, v] of this.kv) if (k !== key) used += encoder.encode(k).length + v.length;
    if (used + encoder.encode(key).length + value.length > this.maxKvBytes) {
      throw new HostError(`kv quota exceeded (${this.maxKvBytes} bytes)`);
    }
    this.kv.set(key, Uint8Array.from(value));
  }
  kvDelete(key) {
    this.need("kv", "kv");
    return this.kv.delete(key);
  }
  kvListKeys(prefix) {
    this.need("kv", "kv");
    return [...this.kv.keys()].filter((k) => k.startsWith(prefix)).sort();
  }
  kvIncrement(key, delta) {
    this.need("kv-atomic", "kv");
    const text = this.kv.has(key) ? new TextDecoder().decode(this.kv.get(key)) : "0";
    if (!/^-?\d+$/.test(text)) throw new HostError(`the value at ${JSON.stringify(key)} is not a number`);
    const value = BigInt(text) + BigInt(delta);
    this.kv.set(key, encoder.encode(String(value)));
    return value;
  }
  eventsPublish(topic, payload) {
    this.need("events", "events");
    this.published.push([topic, payload]);
  }
  eventsSubscribe(pattern) {
    this.need("events", "events");
    const id = BigInt(this.subscriptions.size + 1);
    this.subscriptions.set(id, pattern);
    return id;
  }
  eventsUnsubscribe(id) {
    this.need("events", "events");
    if (!this.subscriptions.delete(BigInt(id))) throw new HostError(`no subscription ${id}`);
  }
  httpRequest(method, url, headers, body) {
    this.need("http-outbound", "http-outbound");
    this.requests.push([method, url, headers, body]);
    const answer = this.responses[`${method} ${url}`];
    if (answer === undefined) throw new HostError(`${method} ${url}: no response set in FakeHost responses`);
    const [status, text] = answer;
    return { status, headers: [], body: typeof text === "string" ? encoder.encode(text) : text };
  }
  memoryStore(text, category) {
    this.need("memory", "memory");
    const id = String(this.memories.length + 1);
    this.memories.push({ id, text, category, importance: 0.5 });
    return id;
  }
  memoryRecall(query, limit) {
    this.need("memory", "memory");
    const words = query.toLowerCase().split(/\s+/).filter(Boolean);
    return this.memories.filter((m) => words.some((w) => m.text.toLowerCase().includes(w))).slice(0, limit);
  }
  cacheGet(namespace, key) {
    this.need("cache", "kv");
    return this.cache.get(`${namespace}\u0000${key}`);
  }
  cachePut(namespace, key, value) {
    this.need("cache", "kv");
    this.cache.set(`${namespace}\u0000${key}`, Uint8Array.from(value));
  }
  cacheClear(namespace) {
    this.need("cache", "kv");
    const keys = [...this.cache.keys()].filter((k) => k.startsWith(`${namespace}\u0000`));
    for (const k of keys) this.cache.delete(k);
    return keys.length;
  }
  rpcRegister(name) {
    this.rpcs.push(name);
  }

  // Driving a plugin the way the host does.

  /** The export objects the component would give the host for `kinds`
   * (e.g. `["tool"]`), from the plugin's module: calls through them see
   * exactly what the host sees, errors included. */
  exports(plugin, kinds) {
    return exportsFor(plugin, kinds, host);
  }

  /** Creates the bus module and runs its onLoad; returns the instance. */
  load(cls) {
    mod.use(cls);
    return mod.load(host);
  }

  /** Calls a registered RPC with a JSON-able payload; the decoded reply. */
  rpc(name, payload) {
    return JSON.parse(mod.rpc(name, JSON.stringify(payload)));
  }

  /** Delivers an event to the module's handlers, if it subscribed to a
   * pattern that matches it. */
  deliver(topic, payload) {
    if ([...this.subscriptions.values()].some((p) => mod.matches(p, topic))) {
      mod.event(topic, typeof payload === "string" ? payload : JSON.stringify(payload));
    }
  }

  /** [status, [[stat, value]]] as the console shows them. */
  describe() {
    return mod.describe();
  }
}
