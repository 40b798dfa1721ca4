// The PRX host API as plugin authors use it: `log`, `config`, `kv`,
// `events`, `http`, `memory` and `clock` (the names PRX's @prx/pdk
// exports), gathered in `host` beside the bus-module calls.
//
// Every call goes to the host, which checks the plugin's permissions and
// quotas; a refusal throws `HostError` with the host's reason.

import { current as b } from "./backend.js";
import { HostError } from "./errors.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function bytes(value) {
  if (typeof value === "string") return encoder.encode(value);
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new TypeError(`expected a string or bytes, not ${typeof value}`);
}

const LEVELS = ["trace", "debug", "info", "warn", "error"];

/** Lines in the host's log, tagged with the plugin's name. */
export const log = Object.freeze({
  trace: (message) => b().log("trace", String(message)),
  debug: (message) => b().log("debug", String(message)),
  info: (message) => b().log("info", String(message)),
  warn: (message) => b().log("warn", String(message)),
  error: (message) => b().log("error", String(message)),
  /** One line at `level` (trace, debug, info, warn or error). */
  log(level, message) {
    if (!LEVELS.includes(level)) throw new TypeError(`unknown log level ${JSON.stringify(level)}; use one of ${LEVELS.join(", ")}`);
    b().log(level, String(message));
  },
});

/** The read-only `[config]` table of plugin.toml. */
export const config = Object.freeze({
  /** The value, or undefined. */
  get: (key) => b().configGet(key) ?? undefined,
  getOr(key, fallback) {
    const value = b().configGet(key);
    return value === undefined || value === null ? fallback : value;
  },
  /** Every [key, value] pair. */
  getAll: () => [...b().configGetAll()].map(([k, v]) => [k, v]),
});

/** The plugin's own persistent key-value store (permission `kv`). */
export const kv = Object.freeze({
  /** The value as bytes, or undefined. */
  get(key) {
    const value = b().kvGet(key);
    return value === undefined || value === null ? undefined : bytes(value);
  },
  /** Stores bytes (a string is stored as UTF-8). */
  set(key, value) {
    b().kvSet(key, bytes(value));
  },
  getString(key) {
    const value = kv.get(key);
    if (value === undefined) return undefined;
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(value);
    } catch {
      return undefined;
    }
  },
  setString(key, value) {
    kv.set(key, encoder.encode(String(value)));
  },
  /** The value decoded from JSON, or undefined (absent or not JSON). */
  getJson(key) {
    const text = kv.getString(key);
    if (text === undefined) return undefined;
    try {
      return JSON.parse(text);
    } catch {
      return undefined;
    }
  },
  setJson(key, value) {
    kv.setString(key, JSON.stringify(value));
  },
  /** True when the key existed. */
  delete: (key) => Boolean(b().kvDelete(key)),
  listKeys: (prefix = "") => [...b().kvListKeys(prefix)],
  /** Adds `delta` atomically (a missing key counts as 0); the new value.
   * The host does it in one step, so concurrent calls lose nothing. */
  increment(key, delta = 1) {
    if (!Number.isSafeInteger(delta)) throw new TypeError(`increment needs a whole number, not ${delta}`);
    return Number(b().kvIncrement(key, delta));
  },
});

function json(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** The host's event bus (permission `events`). */
export const events = Object.freeze({
  /** `payload` is JSON text (at most 64 KiB); any other value is encoded. */
  publish(topic, payload = "{}") {
    b().eventsPublish(topic, json(payload));
  },
  publishJson(topic, value) {
    b().eventsPublish(topic, JSON.stringify(value));
  },
  /** `*`, `prefix.*` or an exact topic; returns the subscription id. */
  subscribe: (pattern) => BigInt(b().eventsSubscribe(pattern)),
  unsubscribe(subscriptionId) {
    b().eventsUnsubscribe(subscriptionId);
  },
});

function response(status, headers, body) {
  return {
    status,
    headers,
    body,
    text: () => decoder.decode(body),
    json: () => JSON.parse(decoder.decode(body)),
    /** The first header called `name` (any case), or undefined. */
    header(name) {
      const wanted = name.toLowerCase();
      const found = headers.find(([k]) => k.toLowerCase() === wanted);
      return found ? found[1] : undefined;
    },
  };
}

/** Outbound HTTP through the host (permission `http-outbound`), only to
 * the origins of plugin.toml's `http_allowlist`. */
export const http = Object.freeze({
  request(method, url, headers = [], body = undefined) {
    const pairs = (headers instanceof Array ? headers : Object.entries(headers)).map(([k, v]) => [String(k), String(v)]);
    const r = b().httpRequest(String(method).toUpperCase(), url, pairs, body === undefined || body === null ? undefined : bytes(body));
    return response(Number(r.status), [...r.headers].map(([k, v]) => [k, v]), bytes(r.body));
  },
  get: (url, headers = []) => http.request("GET", url, headers),
  postJson(url, value, headers = []) {
    const pairs = (headers instanceof Array ? headers : Object.entries(headers)).filter(([k]) => k.toLowerCase() !== "content-type");
    pairs.push(["Content-Type", "application/json"]);
    return http.request("POST", url, pairs, JSON.stringify(value));
  },
  /** The body of a response as text (PRX's helper). */
  bodyText: (r) => decoder.decode(r.body),
  /** The body of a response parsed as JSON (PRX's helper). */
  bodyJson: (r) => JSON.parse(decoder.decode(r.body)),
});

/** The host's long-term memory (permission `memory`). */
export const memory = Object.freeze({
  /** Returns the new entry's id. */
  store: (text, category = "other") => b().memoryStore(String(text), String(category)),
  /** Up to `limit` entries: { id, text, category, importance }. */
  recall: (query, limit = 5) =>
    [...b().memoryRecall(String(query), limit)].map((e) => ({ id: e.id, text: e.text, category: e.category, importance: e.importance })),
});

/** The time, from the component's clock. */
export const clock = Object.freeze({
  nowMs: () => Date.now(),
  nowIso: () => new Date().toISOString(),
});

export { HostError };

/** The backend in use (the bus-module cache calls it directly). */
export { b as backend };
