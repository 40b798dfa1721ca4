"""What a bus module shows operators: `ModuleInfo` and its `Stat`s."""

from dataclasses import dataclass, field
from typing import Any, List


@dataclass
class Stat:
    """A named value on the console panel. `value` may be a function of no
    arguments; it is called each time the module is described."""

    name: str
    value: Any

    def text(self):
        value = self.value() if callable(self.value) else self.value
        return value if isinstance(value, str) else str(value)


@dataclass
class ModuleInfo:
    """A status word (`LOADED`, `DEGRADED`, ...) and stats."""

    status: str = "LOADED"
    stats: List[Stat] = field(default_factory=list)
