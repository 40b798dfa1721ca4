// js-worlds: every capability in one JavaScript plugin. Each answers with
// something that shows the SDK carried the call both ways (records,
// lists, options, errors, promises). The tool also misbehaves on request,
// for the limit tests: {"mode": "spin"} loops forever (fuel or the time
// limit ends it), "alloc" keeps allocating (the memory limit ends it),
// "recurse" recurses without end (the engine's own limit).
import { ModuleInfo, Stat, cron, hook, kv, log, middleware, provider, storage, tool } from "@prx/pdk";

export const echo = tool({ name: "js_worlds", description: "Echoes its arguments", schema: { type: "object" } }, async (args) => {
  if (typeof args.throw === "string") throw new RangeError(args.throw);
  if (args.nested) return nested(args.nested);
  if (args.mode) return misbehave(args.mode);
  // An export may be async: the component settles the promise.
  await Promise.resolve();
  return { echo: args };
});

function misbehave(mode) {
  if (mode === "spin") {
    let n = 0;
    for (;;) n += 1;
  }
  if (mode === "alloc") {
    const hoard = [];
    for (;;) hoard.push(new Uint8Array(1 << 20).fill(1));
  }
  if (mode === "recurse") {
    const down = (n) => down(n + 1) + 1;
    return down(0);
  }
  return mode;
}

function nested(depth) {
  // The stack of a deeper error reaches the plugin's log.
  if (depth <= 0) throw new Error("deep failure");
  return nested(depth - 1);
}

export const onEvent = hook((topic, payload) => {
  kv.increment(`seen:${topic}`);
  kv.setJson(`last:${topic}`, payload);
});

export const process = middleware((stage, data) => {
  if (data && data.block) throw new Error("blocked on request");
  return data && typeof data === "object" ? { ...data, js_worlds: stage } : data;
});

export const run = cron(() => `cron run ${kv.increment("runs")}`);

export const chat = provider("js-worlds", (messages, model, temperature) => {
  if (model === "tools") return { toolCalls: [{ id: "call-1", name: "js_worlds", arguments: { x: 1 } }] };
  return `${model}@${temperature}: ${messages.at(-1).content}`;
});

export const memories = storage("js-worlds", {
  store(key, content, category, sessionId) {
    kv.setJson(`mem:${key}`, [content, category, sessionId ?? null]);
  },
  recall(query, limit) {
    const found = [];
    for (const key of kv.listKeys("mem:")) {
      const [content, category] = kv.getJson(key);
      if (content.toLowerCase().includes(query.toLowerCase())) {
        found.push({ id: key.slice(4), key: key.slice(4), content, category, timestamp: "2026-01-01T00:00:00Z", score: 1 });
      }
    }
    return found.slice(0, limit);
  },
  forget: (key) => kv.delete(`mem:${key}`),
  count: () => kv.listKeys("mem:").length,
});

export default class Worlds {
  onLoad(host) {
    this.host = host;
    this.events = 0;
    this.hits = 0;
    host.registerRpc("worlds.echo", (payload) => payload);
    host.registerRpc("worlds.square", (payload) => this.square(payload));
    host.registerEventHandler("worlds.*", () => {
      this.events += 1;
    });
  }

  square({ x }) {
    if (typeof x !== "number") throw new TypeError(`square needs "x", a number, not ${JSON.stringify(x)}`);
    const cached = this.host.cacheGet("squares", x);
    if (cached !== undefined) {
      this.hits += 1;
      return cached;
    }
    log.info(`squaring ${x}`);
    const answer = { square: x * x };
    this.host.cachePut("squares", x, answer);
    return answer;
  }

  describe() {
    return new ModuleInfo("LOADED", [new Stat("events", () => this.events), new Stat("cache hits", () => this.hits)]);
  }
}
