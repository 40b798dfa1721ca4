"""prx-sdk-py: a temperature converter written against PRX's own Python
SDK (`prx_tool`, `ToolResult`, module-level host names), to show such a
plugin builds and answers here as it is.

    {"value": 100, "from": "C", "to": "F"} -> "212.0 F"
"""

from prx_pdk import ToolResult, host, prx_tool
from prx_pdk.host import config, kv

SCALES = {
    "C": (lambda c: c, lambda c: c),
    "F": (lambda f: (f - 32) * 5 / 9, lambda c: c * 9 / 5 + 32),
    "K": (lambda k: k - 273.15, lambda c: c + 273.15),
}


@prx_tool(
    name="convert_temperature",
    description="Converts a temperature between Celsius (C), Fahrenheit (F) and Kelvin (K)",
    params={
        "type": "object",
        "properties": {
            "value": {"type": "number"},
            "from": {"type": "string", "enum": list(SCALES)},
            "to": {"type": "string", "enum": list(SCALES)},
        },
        "required": ["value", "from", "to"],
    },
)
def execute(args: dict) -> ToolResult:
    source, target = args.get("from"), args.get("to")
    if source not in SCALES or target not in SCALES:
        return ToolResult.err(f"unknown scale: use one of {', '.join(SCALES)}")
    value = args.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ToolResult.err("'value' must be a number")
    celsius = SCALES[source][0](value)
    result = round(SCALES[target][1](celsius), int(config.get_or("precision", "1")))
    count = kv.increment("conversions", 1)
    host.log.info(f"conversion {count} at {host.clock.now_ms()} ms")
    return ToolResult.ok(f"{result} {target}")
