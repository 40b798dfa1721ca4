//! The templates of `prx-plugin new --lang javascript|typescript`:
//! src/plugin.{js,ts}, its tests under Node's test runner against the
//! SDK's fake host, package.json (tsconfig.json for TypeScript),
//! plugin.toml. One text serves both languages: `@T:...@` holds a type
//! annotation and a line starting `@TS ` a TypeScript-only line, both
//! kept for TypeScript and dropped for JavaScript.

use std::path::Path;

use prx_supervisor::manifest::CapabilityType;

use crate::scaffold::{fill, manifest};

pub fn project(name: &str, kind: CapabilityType, typescript: bool) -> Vec<(&'static str, String)> {
    let (source, test) = match kind {
        CapabilityType::Tool => (TOOL, TOOL_TEST),
        CapabilityType::Hook => (HOOK, HOOK_TEST),
        CapabilityType::Middleware => (MIDDLEWARE, MIDDLEWARE_TEST),
        CapabilityType::Cron => (CRON, CRON_TEST),
        CapabilityType::Provider => (PROVIDER, PROVIDER_TEST),
        CapabilityType::Storage => (STORAGE, STORAGE_TEST),
        CapabilityType::Module => (MODULE, MODULE_TEST),
    };
    let lang = if typescript {
        "TypeScript"
    } else {
        "JavaScript"
    };
    let fill = |t: &str| {
        let t = t.replace("@KIND@", kind.as_str()).replace("@LANG@", lang);
        fill(&annotations(&t, typescript), name, Path::new(""))
    };
    let mut files = vec![
        ("plugin.toml", fill(&manifest(kind))),
        ("package.json", fill(PACKAGE_JSON)),
        ("README.md", fill(README)),
        (
            ".gitignore",
            "/build/\n/node_modules/\n/plugin.wasm\n/*.prxplugin\n".to_owned(),
        ),
    ];
    if typescript {
        files.push(("src/plugin.ts", fill(source)));
        files.push(("tests/plugin.test.ts", fill(test)));
        files.push(("tsconfig.json", TSCONFIG.to_owned()));
    } else {
        files.push(("src/plugin.js", fill(source)));
        files.push(("tests/plugin.test.js", fill(test)));
    }
    files
}

/// `@T:text@` and a line `@TS text` -> `text` for TypeScript, nothing
/// for JavaScript.
fn annotations(template: &str, typescript: bool) -> String {
    let lines: String = template
        .split_inclusive('\n')
        .filter_map(|line| match line.strip_prefix("@TS ") {
            Some(kept) => typescript.then_some(kept),
            None => Some(line),
        })
        .collect();
    let mut out = String::with_capacity(lines.len());
    let mut rest = lines.as_str();
    while let Some(start) = rest.find("@T:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 3..];
        let end = after.find('@').expect("a closed @T:...@ in a template");
        if typescript {
            out.push_str(&after[..end]);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

const PACKAGE_JSON: &str = r##"{
  "name": "@NAME@",
  "version": "0.1.0",
  "description": "A PRX @KIND@ plugin in @LANG@",
  "private": true,
  "type": "module",
  "scripts": {
    "build": "prx-plugin build --release",
    "test": "prx-plugin test --no-smoke"
  }
}
"##;

const TSCONFIG: &str = r##"{
  "compilerOptions": {
    "target": "ES2022",
    "module": "ES2022",
    "moduleResolution": "bundler",
    "lib": ["ES2022", "DOM"],
    "strict": true,
    "skipLibCheck": true
  },
  "include": ["src/**/*.ts", "tests/**/*.ts"]
}
"##;

const README: &str = r##"# @NAME@

A PRX @KIND@ plugin in @LANG@ (the `@prx/pdk` SDK, built into prx-plugin).

    prx-plugin build --release   # src/plugin -> plugin.wasm (componentize-js), validated
    prx-plugin test              # node --test (a fake host), then one call in a real supervisor
    prx-plugin pack              # @NAME@-0.1.0.prxplugin, with checksums
    prx-plugin install @NAME@-0.1.0.prxplugin --plugins /path/to/plugins

`npm test` runs the plugin's own tests. npm packages it installs are
bundled into the component. The module's top level runs once at build
time (what it computes is kept in the component), so it must not call the
host there. The JavaScript engine is part of the component (its memory
starts at about 9 MiB): 16 MB runs a small plugin, 32 MB leaves room.
"##;

const TOOL: &str = r##"// A tool: {"name": "ada"} -> "Hello, ada! (greeting 3)", counting the
// greetings in the plugin's kv store.
import { kv, tool } from "@prx/pdk";

const schema = { type: "object", properties: { name: { type: "string" } } };

export const greet = tool({ name: "@NAME@", description: "Greets someone and counts the greetings", schema }, (args@T:: { name?: unknown }@) => {
  const name = args.name ?? "world";
  if (typeof name !== "string") throw new TypeError("name must be a string");
  const count = kv.increment("greetings");
  return `Hello, ${name}! (greeting ${count})`;
});
"##;

const TOOL_TEST: &str = r##"import assert from "node:assert/strict";
import { test } from "node:test";
import { FakeHost } from "@prx/pdk/testing";
import { greet } from "../src/plugin.js";

test("greets and counts", () => {
  const fake = new FakeHost().install();
  try {
    assert.equal(greet({ name: "ada" }), "Hello, ada! (greeting 1)");
    assert.equal(greet({}), "Hello, world! (greeting 2)");
    assert.equal(new TextDecoder().decode(fake.kv.get("greetings")), "2");
    assert.throws(() => greet({ name: 3 }), TypeError);
  } finally {
    fake.uninstall();
  }
});
"##;

const HOOK: &str = r##"// A hook: counts the events it sees per topic in kv (`seen:<topic>`).
import { hook, kv, log } from "@prx/pdk";

export const onEvent = hook((topic@T:: string@, _payload@T:: unknown@) => {
  const count = kv.increment(`seen:${topic}`);
  log.debug(`${topic} #${count}`);
});
"##;

const HOOK_TEST: &str = r##"import assert from "node:assert/strict";
import { test } from "node:test";
import { FakeHost } from "@prx/pdk/testing";
import { onEvent } from "../src/plugin.js";

test("counts per topic", () => {
  const fake = new FakeHost().install();
  try {
    onEvent("tool.called", { tool: "x" });
    onEvent("tool.called", { tool: "y" });
    onEvent("prx.lifecycle.loaded", {});
    const text = (key@T:: string@) => new TextDecoder().decode(fake.kv.get(key));
    assert.equal(text("seen:tool.called"), "2");
    assert.equal(text("seen:prx.lifecycle.loaded"), "1");
  } finally {
    fake.uninstall();
  }
});
"##;

const MIDDLEWARE: &str = r##"// A middleware: marks every message it passes with "checked_by";
// anything but a JSON object blocks the chain.
import { middleware } from "@prx/pdk";

export const process = middleware((stage@T:: string@, data@T:: unknown@) => {
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw new TypeError(`${stage}: expected a JSON object`);
  }
  return { ...data, checked_by: `@NAME@@${stage}` };
});
"##;

const MIDDLEWARE_TEST: &str = r##"import assert from "node:assert/strict";
import { test } from "node:test";
import { process } from "../src/plugin.js";

test("marks objects and refuses the rest", () => {
  assert.deepEqual(process("inbound", { content: "hi" }), { content: "hi", checked_by: "@NAME@@inbound" });
  assert.throws(() => process("inbound", [1]), TypeError);
});
"##;

const CRON: &str = r##"// A cron job: counts its runs in kv and publishes `@NAME@.ran`.
import { cron, events, kv } from "@prx/pdk";

export const run = cron(() => {
  const runs = kv.increment("runs");
  events.publishJson("@NAME@.ran", { runs });
  return `run ${runs}`;
});
"##;

const CRON_TEST: &str = r##"import assert from "node:assert/strict";
import { test } from "node:test";
import { FakeHost } from "@prx/pdk/testing";
import { run } from "../src/plugin.js";

test("counts runs and announces them", () => {
  const fake = new FakeHost().install();
  try {
    assert.equal(run(), "run 1");
    assert.equal(run(), "run 2");
    assert.deepEqual(fake.published.at(-1), ["@NAME@.ran", '{"runs":2}']);
  } finally {
    fake.uninstall();
  }
});
"##;

const PROVIDER: &str = r##"// A provider: answers with the last user message, prefixed by the model.
import { provider } from "@prx/pdk";
@TS import type { ChatMessage } from "@prx/pdk";
export const chat = provider("@NAME@", (messages@T:: ChatMessage[]@, model@T:: string@, _temperature@T:: number@) => {
  const last = [...messages].reverse().find((m) => m.role === "user");
  return `[${model}] ${last ? last.content : ""}`;
});
"##;

const PROVIDER_TEST: &str = r##"import assert from "node:assert/strict";
import { test } from "node:test";
import { chat } from "../src/plugin.js";

test("answers the last user message", () => {
  const history = [
    { role: "system", content: "be brief" },
    { role: "user", content: "hello" },
  ];
  assert.equal(chat(history, "small", 0.2), "[small] hello");
});
"##;

const STORAGE: &str = r##"// A memory backend in the plugin's kv store: one entry per memory,
// recalled by the words of the query.
import { kv, storage } from "@prx/pdk";
@TS import type { StoredMemory } from "@prx/pdk";
const PREFIX = "mem:";

export const store = storage("@NAME@", {
  store(key@T:: string@, content@T:: string@, category@T:: string@) {
    kv.setJson(PREFIX + key, { content, category, timestamp: new Date().toISOString() });
  },
  recall(query@T:: string@, limit@T:: number@) {
    const words = query.toLowerCase().split(/\s+/).filter(Boolean);
    const found@T:: StoredMemory[]@ = [];
    for (const key of kv.listKeys(PREFIX)) {
      const entry = kv.getJson(key) ?? {};
      const score = words.filter((w) => String(entry.content ?? "").toLowerCase().includes(w)).length;
      if (score > 0) {
        const name = key.slice(PREFIX.length);
        found.push({ id: name, key: name, content: entry.content, category: entry.category, timestamp: entry.timestamp, score });
      }
    }
    return found.sort((a, b) => (b.score ?? 0) - (a.score ?? 0)).slice(0, limit);
  },
  forget: (key@T:: string@) => kv.delete(PREFIX + key),
  count: () => kv.listKeys(PREFIX).length,
});
"##;

const STORAGE_TEST: &str = r##"import assert from "node:assert/strict";
import { test } from "node:test";
import { FakeHost } from "@prx/pdk/testing";
import { store } from "../src/plugin.js";

test("stores, recalls and forgets", () => {
  const fake = new FakeHost().install();
  try {
    store.store("a", "the sky is blue", "fact");
    store.store("b", "grass is green", "fact");
    assert.deepEqual(
      store.recall("sky", 5).map((m) => m.key),
      ["a"],
    );
    assert.equal(store.count(), 2);
    assert.equal(store.forget("a"), true);
    assert.equal(store.forget("a"), false);
  } finally {
    fake.uninstall();
  }
});
"##;

const MODULE: &str = r##"// A bus module (the PrismR module contract): the RPC `@NAME@.square`
// squares {"x": n}, caching answers in the host cache; describe() reports
// calls and cache hits.
import { ModuleInfo, Stat } from "@prx/pdk";
@TS import type { BusModule, Host } from "@prx/pdk";
export default class @IDENT@@T: implements BusModule@ {
  @T:host!: Host;
  @calls = 0;
  hits = 0;

  onLoad(host@T:: Host@) {
    this.host = host;
    host.registerRpc("@NAME@.square", (payload) => this.square(payload));
  }

  square(payload@T:: { x?: unknown } | null@) {
    this.calls += 1;
    const x = payload?.x;
    if (typeof x !== "number") throw new TypeError('payload needs "x": a number');
    const hit = this.host.cacheGet("squares", String(x));
    if (hit !== undefined) {
      this.hits += 1;
      return hit;
    }
    const answer = { square: x * x };
    this.host.cachePut("squares", String(x), answer);
    return answer;
  }

  describe() {
    return new ModuleInfo("LOADED", [new Stat("calls", () => this.calls), new Stat("cache_hits", () => this.hits)]);
  }
}
"##;

const MODULE_TEST: &str = r##"import assert from "node:assert/strict";
import { test } from "node:test";
import { FakeHost } from "@prx/pdk/testing";
import @IDENT@ from "../src/plugin.js";

test("squares and caches", () => {
  const fake = new FakeHost().install();
  try {
    fake.load(@IDENT@);
    assert.deepEqual(fake.rpc("@NAME@.square", { x: 3 }), { square: 9 });
    assert.deepEqual(fake.rpc("@NAME@.square", { x: 3 }), { square: 9 });
    assert.deepEqual(fake.describe(), ["LOADED", [["calls", "2"], ["cache_hits", "1"]]]);
    assert.throws(() => fake.rpc("@NAME@.square", {}), TypeError);
  } finally {
    fake.uninstall();
  }
});
"##;
