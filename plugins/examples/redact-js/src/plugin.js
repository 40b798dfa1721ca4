// redact-js: a middleware for messages ({"content": "..."}). At every
// stage it masks e-mail addresses and phone numbers in `content`, and it
// blocks a message that contains a word of the operator's `banned` list
// (the caller sees the reason, the chain stops). It counts what it did
// in kv: `redacted` and `blocked`.
import { config, kv, log, middleware } from "@prx/pdk";

const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/g;
// Seven or more digits, with the spaces, dots, dashes and brackets
// phone numbers are written with, and an optional leading +.
const PHONE = /\+?\d[\d ().-]{5,}\d/g;

/** The banned words of [config], lower-cased. */
export function bannedWords() {
  return (config.get("banned") ?? "")
    .split(",")
    .map((w) => w.trim().toLowerCase())
    .filter(Boolean);
}

/** `text` with addresses and numbers masked, and how many were. */
export function redact(text) {
  let count = 0;
  const masked = text
    .replace(EMAIL, () => {
      count += 1;
      return "[email]";
    })
    .replace(PHONE, () => {
      count += 1;
      return "[phone]";
    });
  return { text: masked, count };
}

export const process = middleware((stage, data) => {
  if (data === null || typeof data !== "object" || typeof data.content !== "string") {
    return undefined; // Not a message: passed on unchanged.
  }
  const words = new Set(data.content.toLowerCase().split(/[^a-z0-9']+/));
  const hit = bannedWords().find((w) => words.has(w));
  if (hit !== undefined) {
    kv.increment("blocked");
    log.warn(`${stage}: blocked a message containing "${hit}"`);
    throw new Error(`the message contains the banned word "${hit}"`);
  }
  const { text, count } = redact(data.content);
  if (count === 0) return undefined;
  kv.increment("redacted", count);
  return { ...data, content: text };
});
