//! The Python templates of `prx-plugin new --lang python`: plugin.py, its
//! pytest tests against the SDK's fake host, pyproject.toml, plugin.toml.

use std::path::Path;

use prx_supervisor::manifest::CapabilityType;

use crate::scaffold::{fill, manifest};

pub fn project(name: &str, kind: CapabilityType) -> Vec<(&'static str, String)> {
    let (source, test) = match kind {
        CapabilityType::Tool => (TOOL, TOOL_TEST),
        CapabilityType::Hook => (HOOK, HOOK_TEST),
        CapabilityType::Middleware => (MIDDLEWARE, MIDDLEWARE_TEST),
        CapabilityType::Cron => (CRON, CRON_TEST),
        CapabilityType::Provider => (PROVIDER, PROVIDER_TEST),
        CapabilityType::Storage => (STORAGE, STORAGE_TEST),
        CapabilityType::Module => (MODULE, MODULE_TEST),
    };
    let fill = |t: &str| fill(&t.replace("@KIND@", kind.as_str()), name, Path::new(""));
    vec![
        ("plugin.toml", fill(&manifest(kind))),
        ("plugin.py", fill(source)),
        ("tests/test_plugin.py", fill(test)),
        ("pyproject.toml", fill(PYPROJECT)),
        ("README.md", fill(README)),
        (
            ".gitignore",
            "/build/\n/plugin.wasm\n/*.prxplugin\n__pycache__/\n".to_owned(),
        ),
    ]
}

const PYPROJECT: &str = r##"[project]
name = "@NAME@"
version = "0.1.0"
description = "A PRX @KIND@ plugin in Python"
requires-python = ">=3.10"

[tool.pytest.ini_options]
testpaths = ["tests"]
"##;

const README: &str = r##"# @NAME@

A PRX @KIND@ plugin in Python (the `prx_pdk` SDK, built into prx-plugin).

    prx-plugin build             # plugin.py -> plugin.wasm (componentize-py), validated
    prx-plugin test              # pytest (a fake host), then one call in a real supervisor
    prx-plugin pack              # @NAME@-0.1.0.prxplugin, with checksums
    prx-plugin install @NAME@-0.1.0.prxplugin --plugins /path/to/plugins

plugin.py runs once at build time (its imports and top-level code are
kept in the component), so it must not call the host at import. The
interpreter is part of the component: keep `max_memory_mb` at 32 or more.
"##;

const TOOL: &str = r##""""A tool: `{"name": "ada"}` -> `Hello, ada! (greeting 3)`, counting the
greetings in the plugin's kv store."""

from prx_pdk import host, tool

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}}


@tool(name="@NAME@", description="Greets someone and counts the greetings", schema=SCHEMA)
def greet(args):
    name = args.get("name", "world")
    if not isinstance(name, str):
        raise TypeError("name must be a string")
    count = host.kv.increment("greetings")
    return f"Hello, {name}! (greeting {count})"
"##;

const TOOL_TEST: &str = r##"import pytest

import plugin
from prx_pdk.testing import FakeHost


def test_greets_and_counts():
    with FakeHost() as fake:
        assert plugin.greet({"name": "ada"}) == "Hello, ada! (greeting 1)"
        assert plugin.greet({}) == "Hello, world! (greeting 2)"
        assert fake.kv["greetings"] == b"2"
        with pytest.raises(TypeError):
            plugin.greet({"name": 3})
"##;

const HOOK: &str = r##""""A hook: counts the events it sees per topic in kv (`seen:<topic>`)."""

from prx_pdk import hook, host


@hook
def on_event(topic, payload):
    count = host.kv.increment(f"seen:{topic}")
    host.log.debug(f"{topic} #{count}")
"##;

const HOOK_TEST: &str = r##"import plugin
from prx_pdk.testing import FakeHost


def test_counts_per_topic():
    with FakeHost() as fake:
        plugin.on_event("tool.called", {"tool": "x"})
        plugin.on_event("tool.called", {"tool": "y"})
        plugin.on_event("prx.lifecycle.loaded", {})
        assert fake.kv["seen:tool.called"] == b"2"
        assert fake.kv["seen:prx.lifecycle.loaded"] == b"1"
"##;

const MIDDLEWARE: &str = r##""""A middleware: marks every message it passes with `"checked_by"`;
anything but a JSON object blocks the chain."""

from prx_pdk import middleware


@middleware
def process(stage, data):
    if not isinstance(data, dict):
        raise ValueError(f"{stage}: expected a JSON object")
    return {**data, "checked_by": f"@NAME@@{stage}"}
"##;

const MIDDLEWARE_TEST: &str = r##"import pytest

import plugin


def test_marks_objects_and_refuses_the_rest():
    assert plugin.process("inbound", {"content": "hi"}) == {"content": "hi", "checked_by": "@NAME@@inbound"}
    with pytest.raises(ValueError):
        plugin.process("inbound", [1])
"##;

const CRON: &str = r##""""A cron job: counts its runs in kv and publishes `@NAME@.ran`."""

from prx_pdk import cron, host


@cron
def run():
    runs = host.kv.increment("runs")
    host.events.publish_json("@NAME@.ran", {"runs": runs})
    return f"run {runs}"
"##;

const CRON_TEST: &str = r##"import plugin
from prx_pdk.testing import FakeHost


def test_counts_runs_and_announces_them():
    with FakeHost() as fake:
        assert plugin.run() == "run 1"
        assert plugin.run() == "run 2"
        assert fake.published[-1] == ("@NAME@.ran", '{"runs":2}')
"##;

const PROVIDER: &str = r##""""A provider: answers with the last user message, prefixed by the model."""

from prx_pdk import provider


@provider("@NAME@")
def chat(messages, model, temperature):
    last = next((m.content for m in reversed(messages) if m.role == "user"), "")
    return f"[{model}] {last}"
"##;

const PROVIDER_TEST: &str = r##"import plugin
from prx_pdk import ChatMessage


def test_answers_the_last_user_message():
    history = [ChatMessage("system", "be brief"), ChatMessage("user", "hello")]
    assert plugin.chat(history, "small", 0.2) == "[small] hello"
"##;

const STORAGE: &str = r##""""A memory backend in the plugin's kv store: one entry per memory,
recalled by the words of the query."""

import time

from prx_pdk import StoredMemory, host, storage

PREFIX = "mem:"


@storage("@NAME@")
class Store:
    def store(self, key, content, category, session_id):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        host.kv.set_json(PREFIX + key, {"content": content, "category": category, "timestamp": stamp})

    def recall(self, query, limit, session_id):
        words = query.lower().split()
        found = []
        for key in host.kv.list_keys(PREFIX):
            entry = host.kv.get_json(key) or {}
            score = sum(w in entry.get("content", "").lower() for w in words)
            if score:
                name = key[len(PREFIX):]
                found.append(StoredMemory(name, name, entry["content"], entry["category"], entry["timestamp"], float(score)))
        found.sort(key=lambda m: -m.score)
        return found[:limit]

    def forget(self, key):
        return host.kv.delete(PREFIX + key)

    def count(self):
        return len(host.kv.list_keys(PREFIX))
"##;

const STORAGE_TEST: &str = r##"import plugin
from prx_pdk.testing import FakeHost


def test_stores_recalls_and_forgets():
    with FakeHost():
        store = plugin.Store()
        store.store("a", "the sky is blue", "fact", None)
        store.store("b", "grass is green", "fact", None)
        assert [m.key for m in store.recall("sky", 5, None)] == ["a"]
        assert store.count() == 2
        assert store.forget("a") is True
        assert store.forget("a") is False
"##;

const MODULE: &str = r##""""A bus module (the PrismR module contract): the RPC `@NAME@.square`
squares `{"x": n}`, caching answers in the host cache; describe() reports
calls and cache hits."""

from prx_host import ModuleInfo, Stat


class @IDENT@:
    name = "@NAME@"

    def on_load(self, host, config=None):
        self.host = host
        self.calls = self.hits = 0
        host.register_rpc("@NAME@.square", self._square)

    def _square(self, payload):
        self.calls += 1
        x = payload.get("x") if isinstance(payload, dict) else None
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise ValueError('payload needs "x": a number')
        hit = self.host.cache_get("squares", repr(x))
        if hit is not None:
            self.hits += 1
            return hit
        answer = {"square": x * x}
        self.host.cache_put("squares", repr(x), answer)
        return answer

    def describe(self):
        return ModuleInfo(status="LOADED", stats=[Stat("calls", lambda: self.calls), Stat("cache_hits", lambda: self.hits)])
"##;

const MODULE_TEST: &str = r##"import pytest

import plugin
from prx_pdk.testing import FakeHost


def test_squares_and_caches():
    with FakeHost() as fake:
        fake.load(plugin.@IDENT@)
        assert fake.rpc("@NAME@.square", {"x": 3}) == {"square": 9}
        assert fake.rpc("@NAME@.square", {"x": 3}) == {"square": 9}
        assert fake.describe() == ("LOADED", [("calls", "2"), ("cache_hits", "1")])
        with pytest.raises(ValueError):
            fake.rpc("@NAME@.square", {})
"##;
