"""The component's entry point (componentize-py's app module).

`prx-plugin build` runs componentize-py with this module as the app. It
imports the author's `plugin` module, which registers its capabilities,
checks them against the manifest (`prx_build.CAPABILITIES`, written by the
build) and exports the world classes. All of this runs at build time and
is kept in the component's snapshot, so a worker starts with it done.
"""

import plugin as _plugin
import prx_build as _build

from prx_pdk import worlds as _worlds
from prx_pdk.worlds import (  # noqa: F401  (componentize-py looks them up here)
    CronExports,
    HookExports,
    MiddlewareExports,
    ModuleExports,
    ProviderExports,
    StorageExports,
    ToolExports,
)

_worlds.finish(_plugin, _build.CAPABILITIES)
