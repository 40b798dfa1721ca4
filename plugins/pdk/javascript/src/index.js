// @prx/pdk: write PRX plugins in JavaScript or TypeScript.
//
//     import { tool, kv, log } from "@prx/pdk";
//
//     export const hello = tool({ name: "hello", description: "Greets someone" }, (args) => {
//       const count = kv.increment("greetings");
//       log.info(`greeting #${count}`);
//       return `Hello, ${args.name ?? "world"}!`;
//     });
//
// `prx-plugin build` compiles TypeScript with tsc, bundles the plugin
// with this SDK and makes a WebAssembly component of it with
// componentize-js, for the world its plugin.toml declares. The names of
// PRX's own @prx/pdk (`getSpec`/`execute` exports, `resultOk`,
// `middlewareBlock`, `log`, `kv`, ...) work as they are.

import * as api from "./host.js";
import * as mod from "./module.js";

export { log, config, kv, events, http, memory, clock } from "./host.js";
export { HostError, HostUnavailable } from "./errors.js";
export { ModuleInfo, Stat } from "./module.js";
export { tool, hook, middleware, cron, provider, storage } from "./worlds.js";

/** What a plugin reaches the host through, as one object; a bus module's
 * `onLoad(host, config)` receives it. */
export const host = Object.freeze({
  log: api.log,
  config: api.config,
  kv: api.kv,
  events: api.events,
  http: api.http,
  memory: api.memory,
  clock: api.clock,
  /** Routes the bus RPC `name` to `fn(payload) -> reply` (JSON values).
   * Only in onLoad. */
  registerRpc: (name, fn) => mod.registerRpc(name, fn),
  /** Calls `fn(event)` for each event whose type matches `pattern` (`*`,
   * `prefix.*` or exact); `event` is an object with its `type`. Only in
   * onLoad. */
  registerEventHandler: (pattern, fn) => mod.registerEventHandler(pattern, fn),
  /** Publishes `event`: an object with a `type` (the topic; the object is
   * the payload), or a topic and a JSON-able payload. */
  publish(event, payload) {
    if (typeof event === "string") return api.events.publish(event, payload === undefined ? {} : payload);
    if (event !== null && typeof event === "object" && typeof event.type === "string") return api.events.publish(event.type, event);
    throw new TypeError("publish takes an object with a `type` or a topic and a payload");
  },
  /** The value cached at `key` in `namespace` (as it was put), or undefined. */
  cacheGet(namespace, key) {
    const raw = api.backend().cacheGet(namespace, String(key));
    return raw === undefined || raw === null ? undefined : JSON.parse(new TextDecoder().decode(raw));
  },
  /** Caches a JSON-able value; it survives restarts and reloads. */
  cachePut(namespace, key, value) {
    api.backend().cachePut(namespace, String(key), new TextEncoder().encode(JSON.stringify(value)));
  },
  /** Drops the namespace; returns how many entries it had. */
  cacheClear: (namespace) => Number(api.backend().cacheClear(namespace)),
});

// PRX's @prx/pdk helpers, with the same names and values.

/** A successful tool result. */
export const resultOk = (output) => ({ success: true, output });
/** A failed tool result. */
export const resultErr = (error) => ({ success: false, output: "", error });
/** Middleware: pass `data` (JSON text) on. */
export const middlewareContinue = (data) => ({ action: "continue", data });
/** Middleware: stop the chain with `reason`. */
export const middlewareBlock = (reason) => ({ action: "block", reason });
