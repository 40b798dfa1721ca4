"""hello-py: the smallest useful Python tool. It greets someone, counts
the greetings in kv, and refuses a bad name with an exception (which the
caller receives as an error naming the plugin)."""

from prx_pdk import host, tool

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "description": "Who to greet"}},
}


@tool(name="hello", description="Greets someone by name", schema=SCHEMA)
def hello(args):
    name = args.get("name", "world")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a non-empty string, not {name!r}")
    count = host.kv.increment("greetings")
    greeting = host.config.get_or("greeting", "Hello")
    host.log.info(f"greeting #{count} for {name}")
    return f"{greeting}, {name}! (greeting #{count})"
