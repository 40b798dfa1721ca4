/**
 * prx-sdk-ts: a slug maker written against PRX's own @prx/pdk, the way
 * its examples are written: `getSpec` and `execute` exported from the
 * module, `resultOk`/`resultErr`, and its host wrappers. It shows such a
 * plugin builds and answers here as it is (its package.json points at an
 * @prx/pdk that is not there; prx-plugin brings its own).
 *
 *   {"title": "Hello, World!"} -> "hello-world"
 */
import { config, kv, log, resultErr, resultOk } from "@prx/pdk";
import type { PluginResult, ToolSpec } from "@prx/pdk";

export function getSpec(): ToolSpec {
  return {
    name: "slugify",
    description: "Turns a title into a URL slug",
    parametersSchema: JSON.stringify({
      type: "object",
      properties: { title: { type: "string" } },
      required: ["title"],
    }),
  };
}

export function execute(argsJson: string): PluginResult {
  let args: { title?: unknown };
  try {
    args = JSON.parse(argsJson) as typeof args;
  } catch (e) {
    return resultErr(`Invalid JSON args: ${String(e)}`);
  }
  if (typeof args.title !== "string" || args.title.trim() === "") {
    return resultErr('"title" must be a non-empty string');
  }
  if (args.title === "explode") {
    // An exception, not a result: the SDK makes it the caller's error.
    throw new Error("asked to explode");
  }
  const separator = config.getOr("separator", "-");
  const slug = args.title
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, separator)
    .replace(new RegExp(`^${separator}+|${separator}+$`, "g"), "");
  const made = kv.increment("slugs_made", 1);
  log.info(`slug ${made}: ${slug}`);
  return resultOk(slug);
}
