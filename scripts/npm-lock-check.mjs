// The supply-chain gate for npm lock files (scripts/supply-chain.sh runs
// it on plugins/cli/js, the JavaScript toolchain). npm has no offline
// advisory database, so this checks what can be checked without one:
//   - every package is pinned by a sha512 integrity hash (npm ci refuses
//     a download that does not match it);
//   - every package comes from the npm registry: no git, file, link or
//     tarball-URL dependencies;
//   - every license is on the allow-list (the same spirit as deny.toml).
//
//   node scripts/npm-lock-check.mjs LOCKFILE [NODE_MODULES_ROOT]
// Exit 0 when clean; 1 with one line per finding.

import { readFileSync, existsSync } from "node:fs";
import { join, dirname } from "node:path";

const ALLOWED = new Set([
  "MIT",
  "ISC",
  "Apache-2.0",
  "Apache-2.0 WITH LLVM-exception",
  "(Apache-2.0 WITH LLVM-exception)",
  "BSD-2-Clause",
  "BSD-3-Clause",
  "0BSD",
  "BlueOak-1.0.0",
]);
const REGISTRY = "https://registry.npmjs.org/";
// Packages whose package.json names no license, with the one their
// LICENSE file grants (checked by hand, as deny.toml's clarify does).
const CLARIFIED = {
  "@bytecodealliance/componentize-js": "Apache-2.0 WITH LLVM-exception",
  // jco's alias for an older componentize-js (npm: specifier).
  "@bytecodealliance/componentize-js-0-19-3": "Apache-2.0 WITH LLVM-exception",
};

const [lockPath, root = dirname(lockPath)] = process.argv.slice(2);
const lock = JSON.parse(readFileSync(lockPath, "utf8"));
const findings = [];
let count = 0;

// A lock entry may leave out the license; the installed package says it.
function license(path, entry) {
  if (entry.license) return entry.license;
  const clarified = CLARIFIED[path.replace(/^.*node_modules\//, "")];
  if (clarified) return clarified;
  const installed = join(root, path, "package.json");
  return existsSync(installed) ? JSON.parse(readFileSync(installed, "utf8")).license : undefined;
}

for (const [path, entry] of Object.entries(lock.packages ?? {})) {
  if (path === "") continue;
  count += 1;
  const name = `${path.replace(/^.*node_modules\//, "")}@${entry.version ?? "?"}`;
  if (entry.link) findings.push(`${name}: a link to ${entry.resolved}, not a registry package`);
  if (entry.resolved && !entry.resolved.startsWith(REGISTRY)) findings.push(`${name}: comes from ${entry.resolved}, not ${REGISTRY}`);
  if (!entry.link && !String(entry.integrity ?? "").startsWith("sha512-")) findings.push(`${name}: no sha512 integrity hash`);
  const spdx = license(path, entry);
  if (!ALLOWED.has(spdx)) findings.push(`${name}: license ${spdx ?? "(none)"} is not on the allow-list`);
}
if (lock.lockfileVersion < 2) findings.push(`${lockPath}: lockfileVersion ${lock.lockfileVersion}; npm 7 or later writes 2 or 3`);

if (findings.length > 0) {
  for (const f of findings) console.error(`${lockPath}: ${f}`);
  process.exit(1);
}
console.log(`${lockPath}: ${count} packages, each from the registry, pinned by sha512, with an allowed license`);
