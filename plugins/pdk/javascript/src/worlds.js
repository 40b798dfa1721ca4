// The PRX worlds: how a plugin says what it provides, and the export
// objects the component gives the host.
//
// Two ways to write a plugin, and both build:
//
//   - registration, as the Python SDK does it:
//       export const hello = tool({ name: "hello", description: "...", schema }, (args) => "...");
//     with `hook(fn)`, `middleware(fn)`, `cron(fn)`, `provider(name, fn)`,
//     `storage(name, impl)` and, for a bus module, a class with `onLoad`;
//   - the functions of the WIT interface exported from the module, as
//     PRX's @prx/pdk examples do it: `getSpec` and `execute`, `onEvent`,
//     `process`, `run`, `name` and `chat`, or the storage functions.
//
// Whatever a plugin function throws becomes an error for the caller
// (`Name: message`) and a stack in the plugin's log; a call never hangs
// on an exception.

import * as mod from "./module.js";
import { report, unlessOutOfMemory } from "./report.js";

const registered = new Map();

function register(kind, entry) {
  if (registered.has(kind)) {
    throw new TypeError(`a plugin has one ${kind}: ${registered.get(kind).label} and ${entry.label} are both registered`);
  }
  registered.set(kind, entry);
}

function label(fn) {
  return (typeof fn === "function" && fn.name) || "an anonymous function";
}

function needFunction(what, fn) {
  if (typeof fn !== "function") throw new TypeError(`${what} needs a function, not ${typeof fn}`);
}

/** A tool: `fn(args) -> string | JSON-able`. `schema` is the JSON Schema
 * of its arguments (default: any object). Returns `fn`. */
export function tool({ name, description = "", schema = { type: "object" } }, fn) {
  if (typeof name !== "string" || !name) throw new TypeError("tool({ name, ... }) needs the tool's name");
  needFunction(`tool ${name}`, fn);
  register("tool", { label: label(fn), fn, name, description, schema });
  return fn;
}

/** A hook: `fn(event, payload)` for each event its manifest subscribes
 * to; `payload` is the decoded JSON. Returns `fn`. */
export function hook(fn) {
  needFunction("hook", fn);
  register("hook", { label: label(fn), fn });
  return fn;
}

/** Middleware: `fn(stage, data) -> data` (undefined keeps the data);
 * throwing blocks the chain. Returns `fn`. */
export function middleware(fn) {
  needFunction("middleware", fn);
  register("middleware", { label: label(fn), fn });
  return fn;
}

/** A cron job: `fn() -> string | undefined`, run on the manifest's
 * schedule. Returns `fn`. */
export function cron(fn) {
  needFunction("cron", fn);
  register("cron", { label: label(fn), fn });
  return fn;
}

/** A model provider: `fn(messages, model, temperature) -> string |
 * { text, toolCalls }`; messages are `{ role, content }`. Returns `fn`. */
export function provider(name, fn) {
  needFunction(`provider ${name}`, fn);
  register("provider", { label: label(fn), fn, name: String(name) });
  return fn;
}

/** A memory backend: an object (or a class, made once) with
 * `store(key, content, category, sessionId)`, `recall(query, limit,
 * sessionId) -> [{ id, key, content, category, timestamp, score }]`,
 * `forget(key) -> boolean`, `count() -> number` and optionally
 * `health() -> boolean`. Returns `impl`. */
export function storage(name, impl) {
  if (impl === null || (typeof impl !== "object" && typeof impl !== "function")) {
    throw new TypeError(`storage ${name} needs an object or a class with store, recall, forget and count`);
  }
  register("storage", { label: impl.name || "an object", impl, name: String(name) });
  return impl;
}

/** Forgets registrations (the fake host's reset between tests). */
export function reset() {
  registered.clear();
  stores.length = 0;
}

// A result that may be a promise: componentize-js settles a promise an
// export returns, so async plugin functions work as they are.
function then(value, onValue) {
  return value !== null && typeof value === "object" && typeof value.then === "function" ? value.then(onValue) : onValue(value);
}

/** Runs `call`; an exception becomes the WIT error (a thrown string). */
function guard(where, call) {
  const fail = (e) =>
    unlessOutOfMemory(e, where, () => {
      throw report(e, where);
    });
  try {
    const out = call();
    return out !== null && typeof out === "object" && typeof out.then === "function" ? out.then(undefined, fail) : out;
  } catch (e) {
    return fail(e);
  }
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

const json = (value) => (typeof value === "string" ? value : JSON.stringify(value) ?? "null");

function toolExports(entry) {
  return {
    getSpec: () => ({ name: entry.name, description: entry.description, parametersSchema: json(entry.schema) }),
    execute(args) {
      const where = `tool ${entry.name}`;
      const failed = (e) => unlessOutOfMemory(e, where, () => ({ success: false, output: "", error: report(e, where) }));
      try {
        const parsed = args.trim() ? JSON.parse(args) : {};
        const out = then(entry.fn(parsed), (v) => ({ success: true, output: json(v), error: undefined }));
        return out instanceof Promise ? out.catch(failed) : out;
      } catch (e) {
        return failed(e);
      }
    },
  };
}

const hookExports = (entry) => ({
  onEvent: (event, payloadJson) => guard(`hook on ${event}`, () => then(entry.fn(event, parse(payloadJson)), () => undefined)),
});

const middlewareExports = (entry) => ({
  process: (stage, dataJson) =>
    guard(`middleware at ${stage}`, () => then(entry.fn(stage, JSON.parse(dataJson)), (out) => (out === undefined ? dataJson : json(out)))),
});

const cronExports = (entry) => ({
  run: () => guard("cron run", () => then(entry.fn(), (out) => (out === undefined || out === null ? "ok" : String(out)))),
});

function chatResponse(out) {
  if (typeof out === "string") return { text: out, toolCalls: [] };
  const calls = out.toolCalls ?? out.tool_calls ?? [];
  return {
    text: out.text ?? undefined,
    toolCalls: calls.map((c) => ({ id: String(c.id), name: String(c.name), arguments: json(c.arguments) })),
  };
}

const providerExports = (entry) => ({
  name: () => entry.name,
  chat: (messages, model, temperature) =>
    guard(`provider ${model}`, () =>
      then(entry.fn(messages.map((m) => ({ role: m.role, content: m.content })), model, temperature), chatResponse),
    ),
});

const stores = [];

function store(entry) {
  if (stores.length === 0) {
    const impl = entry.impl;
    stores.push(typeof impl === "function" ? new impl() : impl);
  }
  return stores[0];
}

function memoryEntry(m) {
  return {
    id: String(m.id),
    key: String(m.key),
    content: String(m.content),
    category: String(m.category),
    timestamp: String(m.timestamp),
    score: m.score === undefined || m.score === null ? undefined : Number(m.score),
  };
}

const storageExports = (entry) => ({
  name: () => entry.name,
  storeMemory: (key, content, category, sessionId) =>
    guard("storage store", () => then(store(entry).store(key, content, category, sessionId), () => undefined)),
  recallMemory: (query, limit, sessionId) =>
    guard("storage recall", () => then(store(entry).recall(query, limit, sessionId), (found) => [...found].map(memoryEntry))),
  forgetMemory: (key) => guard("storage forget", () => then(store(entry).forget(key), Boolean)),
  countMemories: () => guard("storage count", () => then(store(entry).count(), (n) => Number(n) >>> 0)),
  healthCheck() {
    try {
      const impl = store(entry);
      return typeof impl.health === "function" ? Boolean(impl.health()) : true;
    } catch (e) {
      return unlessOutOfMemory(e, "storage health check", () => {
        report(e, "storage health check");
        return false;
      });
    }
  },
});

function moduleExports(host) {
  return {
    onLoad: () => guard("onLoad", () => void mod.load(host)),
    onRpc: (name, payloadJson) => guard(`rpc ${name}`, () => mod.rpc(name, payloadJson)),
    onEvent: (topic, payloadJson) => guard(`event handler for ${topic}`, () => mod.event(topic, payloadJson)),
    describe() {
      const [status, stats] = mod.describe();
      return { status, stats: stats.map(([name, value]) => ({ name, value })) };
    },
  };
}

// ---- PRX's style: the WIT functions exported from the plugin's module.

/** PRX's middleware examples return (or throw) a `MiddlewareAction`,
 * as JSON text or as the object `middlewareContinue`/`middlewareBlock`
 * make; its comments say the host reads it. Here the SDK does. */
function action(value) {
  let said = value;
  if (typeof value === "string") {
    if (!value.startsWith("{")) return undefined;
    try {
      said = JSON.parse(value);
    } catch {
      return undefined; // Not an action: plain data.
    }
  }
  if (said === null || typeof said !== "object") return undefined;
  if (said.action === "continue" && typeof said.data === "string") return { data: said.data };
  if (said.action === "block" && typeof said.reason === "string") return { block: said.reason };
  return undefined;
}

function prxMiddleware(process) {
  return {
    process: (stage, dataJson) => {
      const done = (out) => {
        const said = action(out);
        if (said?.block !== undefined) throw said.block;
        return said?.data ?? (typeof out === "string" ? out : json(out));
      };
      const thrown = (e) =>
        unlessOutOfMemory(e, `middleware at ${stage}`, () => {
          const said = action(e instanceof Error ? e.message : e);
          if (said?.block !== undefined) throw said.block;
          if (said?.data !== undefined) return said.data;
          throw report(e, `middleware at ${stage}`);
        });
      try {
        const out = process(stage, dataJson);
        return out instanceof Promise ? out.then(done, thrown) : done(out);
      } catch (e) {
        return thrown(e);
      }
    },
  };
}

function prxTool(plugin) {
  return {
    getSpec: () => plugin.getSpec(),
    execute(args) {
      const failed = (e) => unlessOutOfMemory(e, "execute", () => ({ success: false, output: "", error: report(e, "execute") }));
      const done = (r) =>
        typeof r === "string" ? { success: true, output: r, error: undefined } : { success: Boolean(r.success), output: String(r.output ?? ""), error: r.error ?? undefined };
      try {
        const out = plugin.execute(args);
        return out instanceof Promise ? out.then(done, failed) : done(out);
      } catch (e) {
        return failed(e);
      }
    },
  };
}

/** What a plugin module exports in PRX's style, per capability. */
const PRX_STYLE = {
  tool: (p) => typeof p.getSpec === "function" && typeof p.execute === "function" && prxTool(p),
  hook: (p) => typeof p.onEvent === "function" && { onEvent: (e, payload) => guard(`hook on ${e}`, () => then(p.onEvent(e, payload), () => undefined)) },
  middleware: (p) => typeof p.process === "function" && prxMiddleware(p.process),
  cron: (p) => typeof p.run === "function" && { run: () => guard("cron run", () => then(p.run(), (out) => (out === undefined ? "ok" : String(out)))) },
  provider: (p) => typeof p.name === "function" && typeof p.chat === "function" && { name: () => p.name(), chat: (...a) => guard("chat", () => p.chat(...a)) },
  storage: (p) =>
    typeof p.storeMemory === "function" && {
      name: () => p.name(),
      storeMemory: (...a) => guard("storage store", () => p.storeMemory(...a)),
      recallMemory: (...a) => guard("storage recall", () => p.recallMemory(...a)),
      forgetMemory: (...a) => guard("storage forget", () => p.forgetMemory(...a)),
      countMemories: () => guard("storage count", () => p.countMemories()),
      healthCheck: () => Boolean(p.healthCheck?.() ?? true),
    },
};

const REGISTERED = {
  tool: toolExports,
  hook: hookExports,
  middleware: middlewareExports,
  cron: cronExports,
  provider: providerExports,
  storage: storageExports,
};

/** The JavaScript name of each capability's exported interface. */
export const EXPORT_NAMES = {
  tool: "toolExports",
  hook: "hookExports",
  middleware: "middlewareExports",
  cron: "cronExports",
  provider: "providerExports",
  storage: "storageExports",
  module: "moduleExports",
};

const HOW = {
  tool: "export const t = tool({ name, description, schema }, (args) => ...), or export getSpec() and execute(argsJson)",
  hook: "export const h = hook((event, payload) => ...), or export onEvent(event, payloadJson)",
  middleware: "export const m = middleware((stage, data) => data), or export process(stage, dataJson)",
  cron: "export const c = cron(() => ...), or export run()",
  provider: 'export const p = provider("name", (messages, model, temperature) => ...), or export name() and chat(...)',
  storage: 'export const s = storage("name", { store, recall, forget, count }), or export the storage-exports functions',
};

/** The export object of each capability in `kinds`, from the plugin
 * module `plugin`; throws, naming what is missing, when the plugin does
 * not provide one its manifest declares. */
export function exportsFor(plugin, kinds, host, source = "the plugin") {
  const out = {};
  for (const kind of kinds) {
    const name = EXPORT_NAMES[kind];
    if (name === undefined) throw new TypeError(`unknown capability ${kind}`);
    if (kind === "module") {
      mod.find(plugin, source);
      out[name] = moduleExports(host);
    } else if (registered.has(kind)) {
      out[name] = REGISTERED[kind](registered.get(kind));
    } else if (plugin[name] !== null && typeof plugin[name] === "object") {
      out[name] = plugin[name];
    } else {
      out[name] = PRX_STYLE[kind](plugin);
      if (!out[name]) throw new TypeError(`plugin.toml declares a ${kind} but ${source} provides none: ${HOW[kind]}`);
    }
  }
  return out;
}
