// What the entry module written by `prx-plugin build` calls: it passes
// the host interfaces imported for the plugin's world and the plugin's
// own module, and exports what comes back under the names componentize-js
// binds to the world's exports. Runs once, when the component is built.

import { useInterfaces } from "./backend.js";
import { host } from "./index.js";
import { exportsFor } from "./worlds.js";

export function bind(plugin, capabilities, interfaces, source) {
  useInterfaces(interfaces);
  return exportsFor(plugin, capabilities, host, source);
}
