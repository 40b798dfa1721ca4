// prx-plugin's JavaScript build, run by `prx-plugin build` with Node:
// bundles the entry module it wrote (the plugin, its npm dependencies and
// the SDK) into one ES module with esbuild, then makes a component of it
// with componentize-js's JavaScript API, offline (no AOT: that path
// downloads a compiler at run time).
//
//   node build.mjs REQUEST.json
//
// REQUEST: { entry, bundle, component, wit, world, sdk: { specifier: file },
//            nodePaths: [dir], disableFeatures: [feature] }
// Prints one JSON line: { bundleBytes, componentBytes, imports, ms }.

import { readFile, writeFile } from "node:fs/promises";
import { build } from "esbuild";
import { componentize } from "@bytecodealliance/componentize-js";

const request = JSON.parse(await readFile(process.argv[2], "utf8"));
const started = Date.now();

// The SDK is the one this prx-plugin carries, whatever the project has
// installed under node_modules/@prx/pdk.
const sdk = {
  name: "prx-sdk",
  setup(b) {
    b.onResolve({ filter: /^@prx\/pdk(\/.*)?$/ }, (args) => {
      const file = request.sdk[args.path];
      if (file === undefined) {
        return { errors: [{ text: `@prx/pdk has no module ${JSON.stringify(args.path)}; it offers ${Object.keys(request.sdk).join(", ")}` }] };
      }
      return { path: file };
    });
  },
};

try {
  await build({
    entryPoints: [request.entry],
    outfile: request.bundle,
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    mainFields: ["module", "main"],
    conditions: ["import", "default"],
    nodePaths: request.nodePaths,
    external: ["prx:*", "wasi:*"],
    plugins: [sdk],
    logLevel: "error",
    legalComments: "none",
  });
} catch (e) {
  // esbuild has printed the errors with their places.
  console.error("bundling failed: a module the plugin imports could not be found or parsed");
  process.exit(2);
}

let result;
try {
  result = await componentize({
    sourcePath: request.bundle,
    witPath: request.wit,
    worldName: request.world,
    disableFeatures: request.disableFeatures,
  });
} catch (e) {
  console.error(String(e?.message ?? e));
  process.exit(3);
}
await writeFile(request.component, result.component);
const bundleBytes = (await readFile(request.bundle)).length;
console.log(
  JSON.stringify({ bundleBytes, componentBytes: result.component.length, imports: result.imports, ms: Date.now() - started }),
);
