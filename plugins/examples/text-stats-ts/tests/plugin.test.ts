import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";
import { FakeHost } from "@prx/pdk/testing";
import { mostFrequent, textStats, words } from "../src/plugin.js";

let fake: FakeHost;
beforeEach(() => {
  fake = new FakeHost({ config: { words_per_minute: "120" } }).install();
});
afterEach(() => fake.uninstall());

test("words are letters and digits, lower-cased, in any script", () => {
  assert.deepEqual(words("It's 2 o'clock, Zoë!"), ["it's", "2", "o'clock", "zoë"]);
});

test("the most frequent words, ties alphabetical", () => {
  assert.deepEqual(mostFrequent(["b", "a", "b", "c", "a", "d"], 3), [["a", 2], ["b", 2], ["c", 1]]);
});

test("statistics, with the reading time at the configured pace and a count in kv", () => {
  const text = "The cat sat. The cat ran! Did the dog see?";
  const stats = textStats({ text, top: 2 });
  assert.deepEqual(stats, { words: 10, sentences: 3, top: [["the", 3], ["cat", 2]], reading_seconds: 5, texts_seen: 1 });
  assert.equal(textStats({ text: "" }).texts_seen, 2);
  assert.equal(new TextDecoder().decode(fake.kv.get("texts_seen")), "2");
});

test("bad arguments are refused with what is wrong", () => {
  assert.throws(() => textStats({}), /"text" must be a string/);
  assert.throws(() => textStats({ text: "x", top: 99 }), RangeError);
});
