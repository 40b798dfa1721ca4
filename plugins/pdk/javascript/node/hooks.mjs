// Resolves @prx/pdk and its subpaths to the SDK beside this file, for
// the plugin's own tests under Node (register.mjs installs it).
const MODULES = {
  "@prx/pdk": "../src/index.js",
  "@prx/pdk/testing": "../src/testing.js",
  "@prx/pdk/component": "../src/component.js",
};

export async function resolve(specifier, context, next) {
  const file = MODULES[specifier];
  if (file !== undefined) {
    return { url: new URL(file, import.meta.url).href, shortCircuit: true };
  }
  return next(specifier, context);
}
