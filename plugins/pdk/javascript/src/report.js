// How an exception in plugin code is reported: its stack goes to the
// plugin's log, its `Name: message` to the caller.

import { current } from "./backend.js";
import { describe } from "./errors.js";

/** How many stack lines go to the log with an error. */
const STACK_LINES = 20;

/** The engine's own "out of memory": the plugin reached max_memory_mb
 * (the host refused to grow its memory). */
export function isOutOfMemory(error) {
  return error === "out of memory" || (error instanceof Error && error.message === "out of memory");
}

/** Runs `onError` for an ordinary exception; an engine out of memory is
 * let through, so the call traps and the host reports the memory limit
 * (as it does for any plugin) and starts a fresh instance. */
export function unlessOutOfMemory(error, where, onError) {
  if (isOutOfMemory(error)) {
    report(error, where);
    throw error;
  }
  return onError(error);
}

/** Logs `error` (thrown in `where`) with its stack into the plugin's log
 * and returns the text for the caller. */
export function report(error, where) {
  const message = describe(error);
  try {
    const stack = error instanceof Error && typeof error.stack === "string" ? error.stack.trim() : "";
    const lines = stack ? "\n" + stack.split("\n").slice(0, STACK_LINES).join("\n") : "";
    current().log("error", `${where} threw ${message}${lines}`);
  } catch {
    // The log is best effort; the caller still gets the error.
  }
  return message;
}
