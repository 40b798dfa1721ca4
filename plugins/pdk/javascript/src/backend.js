// The seam between the SDK and the host.
//
// Inside a component the backend calls the host interfaces the build
// imported for this plugin's world (the entry module the build writes
// passes them to `useInterfaces`); these imports exist only once the
// component runs, so nothing here calls them at build time. Under Node
// there is no host: tests install `FakeHost` from `@prx/pdk/testing`,
// which has the same methods.

import { HostError, HostUnavailable } from "./errors.js";

/** Interface name -> the permission it needs (null: always granted). */
export const PERMISSIONS = {
  log: null,
  config: null,
  kv: "kv",
  "kv-atomic": "kv",
  cache: "kv",
  events: "events",
  "http-outbound": "http-outbound",
  memory: "memory",
  rpc: null,
};

/** The host's answer to a `result` import, as the component runtime
 * throws it: an object carrying the error string as `payload`. */
function hostError(thrown) {
  if (thrown instanceof HostError) return thrown;
  const payload = thrown && typeof thrown === "object" && "payload" in thrown ? thrown.payload : thrown;
  return new HostError(payload instanceof Error ? payload.message : String(payload));
}

/** Calls the host through the interfaces this plugin was built with. */
export class WitBackend {
  constructor(interfaces) {
    this.interfaces = interfaces;
  }

  iface(name) {
    const iface = this.interfaces[name];
    if (!iface) throw new HostUnavailable(name, PERMISSIONS[name]);
    return iface;
  }

  call(name, fn, ...args) {
    const iface = this.iface(name);
    try {
      return iface[fn](...args);
    } catch (e) {
      throw hostError(e);
    }
  }

  log(level, message) {
    this.iface("log").log(level, message);
  }
  configGet(key) {
    return this.call("config", "get", key);
  }
  configGetAll() {
    return this.call("config", "getAll");
  }
  kvGet(key) {
    return this.call("kv", "get", key);
  }
  kvSet(key, value) {
    this.call("kv", "set", key, value);
  }
  kvDelete(key) {
    return this.call("kv", "delete", key);
  }
  kvListKeys(prefix) {
    return this.call("kv", "listKeys", prefix);
  }
  kvIncrement(key, delta) {
    return this.call("kv-atomic", "increment", key, BigInt(delta));
  }
  eventsPublish(topic, payload) {
    this.call("events", "publish", topic, payload);
  }
  eventsSubscribe(pattern) {
    return this.call("events", "subscribe", pattern);
  }
  eventsUnsubscribe(id) {
    this.call("events", "unsubscribe", BigInt(id));
  }
  httpRequest(method, url, headers, body) {
    const r = this.call("http-outbound", "request", method, url, headers, body);
    return { status: r.status, headers: r.headers, body: r.body };
  }
  memoryStore(text, category) {
    return this.call("memory", "store", text, category);
  }
  memoryRecall(query, limit) {
    return this.call("memory", "recall", query, limit);
  }
  cacheGet(namespace, key) {
    return this.call("cache", "get", namespace, key);
  }
  cachePut(namespace, key, value) {
    this.call("cache", "put", namespace, key, value);
  }
  cacheClear(namespace) {
    return this.call("cache", "clear", namespace);
  }
  rpcRegister(name) {
    this.call("rpc", "register", name);
  }
}

/** Outside a component and without a fake host: every call says so. */
class NoHost {
  constructor() {
    return new Proxy(this, {
      get(_target, method) {
        if (method === "log") {
          return (level, message) => console.error(`[${level}] ${message}`);
        }
        return () => {
          throw new HostError(
            `no host: ${String(method)} was called outside a PRX component; in tests, install a FakeHost from @prx/pdk/testing`,
          );
        };
      },
    });
  }
}

let backend = new NoHost();

/** The backend in use. */
export function current() {
  return backend;
}

/** Replaces the backend (a fake host in tests); returns the previous one. */
export function install(next) {
  const previous = backend;
  backend = next;
  return previous;
}

/** Called by the entry module the build writes, with the host interfaces
 * imported for this plugin's world. */
export function useInterfaces(interfaces) {
  install(new WitBackend(interfaces));
}
