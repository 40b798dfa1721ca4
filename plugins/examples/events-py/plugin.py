"""events-py: a Python hook. For each event its manifest subscribes to it
counts the topic in kv (`seen:<topic>`) and keeps the last payload
(`last:<topic>`). A payload without a JSON object is refused."""

from prx_pdk import hook, host


@hook
def on_event(topic, payload):
    if not isinstance(payload, dict):
        raise TypeError(f"{topic}: expected a JSON object, got {type(payload).__name__}")
    count = host.kv.increment(f"seen:{topic}")
    host.kv.set_json(f"last:{topic}", payload)
    host.log.debug(f"{topic} #{count}")
