import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";
import { FakeHost } from "@prx/pdk/testing";
import { process, redact } from "../src/plugin.js";

let fake;
beforeEach(() => {
  fake = new FakeHost({ config: { banned: "Password, secret" } }).install();
});
afterEach(() => fake.uninstall());

const count = (key) => new TextDecoder().decode(fake.kv.get(key));

test("addresses and phone numbers are masked", () => {
  assert.deepEqual(redact("mail ada@example.org or call +44 20 7946 0958."), {
    text: "mail [email] or call [phone].",
    count: 2,
  });
  assert.deepEqual(redact("room 12, 3 people"), { text: "room 12, 3 people", count: 0 });
});

test("a message is redacted, counted, and other fields kept", () => {
  const out = process("inbound", { content: "write to bob@example.com", user: "u1" });
  assert.deepEqual(out, { content: "write to [email]", user: "u1" });
  assert.equal(count("redacted"), "1");
});

test("a clean message or something else passes unchanged", () => {
  assert.equal(process("outbound", { content: "hello" }), undefined);
  assert.equal(process("outbound", [1, 2]), undefined);
});

test("a banned word, any case, blocks the message", () => {
  assert.throws(() => process("inbound", { content: "my PASSWORD is x" }), /banned word "password"/);
  assert.equal(count("blocked"), "1");
  assert.equal(process("inbound", { content: "passwords are fine" }), undefined);
});
