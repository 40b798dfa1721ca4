// `node --import .../register.mjs --test`: how prx-plugin test lets a
// plugin's tests import @prx/pdk without installing it (hooks.mjs).
import { register } from "node:module";

register("./hooks.mjs", import.meta.url);
