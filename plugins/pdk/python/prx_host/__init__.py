"""The names a bus module imports from its host, as in the PrismR
module contract: `from prx_host import ModuleInfo, Stat`."""

from prx_pdk.host import host
from prx_pdk.info import ModuleInfo, Stat

__all__ = ["ModuleInfo", "Stat", "host"]
