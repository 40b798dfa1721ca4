// text-stats-ts: statistics of a text. {"text": "...", "top": 3} ->
// words, sentences, the most frequent words and the reading time at the
// operator's words_per_minute. Counts the texts it has seen in kv.
import { config, kv, log, tool } from "@prx/pdk";

interface Args {
  text?: unknown;
  top?: unknown;
}

export interface Stats {
  words: number;
  sentences: number;
  top: [string, number][];
  reading_seconds: number;
  texts_seen: number;
}

const schema = {
  type: "object",
  properties: {
    text: { type: "string", description: "The text to measure" },
    top: { type: "integer", minimum: 0, maximum: 50, description: "How many frequent words to list (default 3)" },
  },
  required: ["text"],
};

/** Words: runs of anything but spaces and ASCII punctuation (an
 * apostrophe stays inside a word), lower-cased. The engine in the
 * component has no Unicode property escapes (`\p{L}`): it is built
 * without ICU. */
export function words(text: string): string[] {
  return text.toLowerCase().match(/[^\s!-&(-/:-@[-`{-~]+/g) ?? [];
}

/** The `n` most frequent words, ties in alphabetical order. */
export function mostFrequent(all: string[], n: number): [string, number][] {
  const counts = new Map<string, number>();
  for (const w of all) counts.set(w, (counts.get(w) ?? 0) + 1);
  return [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, n);
}

export const textStats = tool({ name: "text_stats", description: "Statistics of a text", schema }, (args: Args): Stats => {
  if (typeof args.text !== "string") throw new TypeError('"text" must be a string');
  const top = args.top === undefined ? 3 : Number(args.top);
  if (!Number.isInteger(top) || top < 0 || top > 50) throw new RangeError('"top" must be a whole number from 0 to 50');
  const perMinute = Number(config.getOr("words_per_minute", "230"));
  if (!(perMinute > 0)) throw new RangeError(`words_per_minute in [config] must be a positive number, not ${config.get("words_per_minute")}`);
  const all = words(args.text);
  const sentences = args.text.split(/[.!?]+/).filter((s) => s.trim().length > 0).length;
  const seen = kv.increment("texts_seen");
  log.debug(`text ${seen}: ${all.length} words`);
  return {
    words: all.length,
    sentences,
    top: mostFrequent(all, top),
    reading_seconds: Math.ceil((all.length / perMinute) * 60),
    texts_seen: seen,
  };
});
