// The bus-module contract: a class with `onLoad(host, config)` that
// registers RPC and event handlers, and an optional `describe()`.
//
//     export default class Forecaster {
//       onLoad(host, config) {
//         host.registerRpc("forecast", (payload) => ({ ... }));
//       }
//       describe() {
//         return new ModuleInfo("LOADED", [new Stat("model", () => "...")]);
//       }
//     }
//
// The class is found in the plugin's module when the component is built
// (its default export, `MODULE`, or the one exported class with an
// `onLoad`); the host creates one instance per worker and calls `onLoad`
// before anything else.

import { current } from "./backend.js";
import { report } from "./report.js";

/** A named value on the console panel; `value` may be a function of no
 * arguments, called each time the module is described. */
export class Stat {
  constructor(name, value) {
    this.name = String(name);
    this.value = value;
  }
  text() {
    const value = typeof this.value === "function" ? this.value() : this.value;
    return typeof value === "string" ? value : JSON.stringify(value) ?? String(value);
  }
}

/** A status word (`LOADED`, `DEGRADED`, ...) and stats. */
export class ModuleInfo {
  constructor(status = "LOADED", stats = []) {
    this.status = String(status);
    this.stats = stats;
  }
}

const state = { cls: null, instance: null, loading: false, rpcs: new Map(), handlers: [] };

/** Forgets every registration and the instance (the fake host does this). */
export function reset() {
  state.instance = null;
  state.loading = false;
  state.rpcs.clear();
  state.handlers.length = 0;
}

function isModuleClass(value) {
  return typeof value === "function" && typeof value.prototype?.onLoad === "function";
}

/** Makes `cls` the plugin's module. */
export function use(cls) {
  if (!isModuleClass(cls)) {
    throw new TypeError(`${cls?.name ?? String(cls)} is not a module class: it needs an onLoad(host, config) method`);
  }
  state.cls = cls;
  return cls;
}

/** The module class the plugin's module exports. */
export function find(namespace, source = "the plugin") {
  if (namespace.MODULE !== undefined) return use(namespace.MODULE);
  if (isModuleClass(namespace.default)) return use(namespace.default);
  const found = Object.values(namespace).filter(isModuleClass);
  if (found.length !== 1) {
    const names = found.map((c) => c.name).join(", ") || "none";
    throw new TypeError(
      `${source} must export exactly one module class with an onLoad(host, config) method (found: ${names}); export it as default, or export const MODULE = TheClass`,
    );
  }
  return use(found[0]);
}

function requireLoading(what) {
  if (!state.loading) {
    throw new Error(`${what} is only possible in onLoad: the host routes what a module registers when it loads`);
  }
}

export function registerRpc(name, fn) {
  requireLoading("registerRpc");
  if (typeof fn !== "function") throw new TypeError(`registerRpc(${JSON.stringify(name)}, ...) needs a function of the payload`);
  current().rpcRegister(name);
  state.rpcs.set(name, fn);
}

export function registerEventHandler(pattern, fn) {
  requireLoading("registerEventHandler");
  if (typeof fn !== "function") throw new TypeError(`registerEventHandler(${JSON.stringify(pattern)}, ...) needs a function of the event`);
  current().eventsSubscribe(pattern);
  state.handlers.push([pattern, fn]);
}

/** `*` matches every topic, `a.*` everything under `a.`, anything else
 * exactly one topic (the host's rule). */
export function matches(pattern, topic) {
  if (pattern === "*") return true;
  if (pattern.endsWith(".*")) return topic.startsWith(pattern.slice(0, -1));
  return pattern === topic;
}

/** on-load: creates the instance and runs its onLoad. */
export function load(host) {
  if (state.cls === null) throw new Error("no module class: the plugin exports none (build it with prx-plugin build)");
  const instance = new state.cls();
  const config = Object.fromEntries(current().configGetAll());
  state.loading = true;
  try {
    instance.onLoad(host, config);
  } finally {
    state.loading = false;
  }
  state.instance = instance;
  return instance;
}

const encode = (reply) => JSON.stringify(reply === undefined ? null : reply);

/** on-rpc: the handler's reply as JSON (a promise of it, for an async
 * handler: the component settles it). */
export function rpc(name, payloadJson) {
  const fn = state.rpcs.get(name);
  if (fn === undefined) throw new Error(`no RPC named ${JSON.stringify(name)} is registered by this module`);
  const payload = payloadJson.trim() ? JSON.parse(payloadJson) : null;
  const reply = fn(payload);
  return reply instanceof Promise ? reply.then(encode) : encode(reply);
}

/** on-event: every handler whose pattern matches, with the event as an
 * object carrying its `type`. */
export function event(topic, payloadJson) {
  let payload;
  try {
    payload = JSON.parse(payloadJson);
  } catch {
    payload = payloadJson;
  }
  const event = payload !== null && typeof payload === "object" && !Array.isArray(payload) ? { ...payload } : { payload };
  if (event.type === undefined) event.type = topic;
  const pending = [];
  for (const [pattern, fn] of [...state.handlers]) {
    if (matches(pattern, topic)) {
      const done = fn(event);
      if (done instanceof Promise) pending.push(done);
    }
  }
  // Async handlers are awaited (the component settles the promise).
  if (pending.length > 0) return Promise.all(pending).then(() => undefined);
  return undefined;
}

/** describe: [status, [[name, value]]] with every stat evaluated; a
 * failing describe shows as status `ERROR` with the exception. */
export function describe() {
  const instance = state.instance;
  if (instance === null || typeof instance.describe !== "function") {
    return [instance === null ? "NOT LOADED" : "LOADED", []];
  }
  try {
    const info = instance.describe();
    if (!(info instanceof ModuleInfo)) throw new TypeError(`describe() returned ${info?.constructor?.name ?? typeof info}, not a ModuleInfo`);
    return [info.status, info.stats.map((s) => (s instanceof Stat ? s : new Stat(...s))).map((s) => [s.name, s.text()])];
  } catch (e) {
    return ["ERROR", [["error", report(e, "describe")]]];
  }
}

/** Registrations, for the fake host. */
export function registered() {
  return { rpcs: [...state.rpcs.keys()], handlers: state.handlers.map(([p]) => p), instance: state.instance };
}
