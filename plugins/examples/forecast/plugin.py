"""forecast: a bus module (the PrismR module contract) that answers the
`forecast` RPC with a price cone.

    prx rpc forecast '{"closes": [100.5, 92.1, ...], "horizon": 12}'
    {"p10": [...], "p50": [...], "p90": [...]}

The method is a bootstrap of log returns: the latest `window` one-step log
returns of the series are resampled with replacement into `paths` future
paths of `horizon` steps from the last close, and each step's 10th, 50th
and 90th percentiles form the cone. The random draws are seeded from the
input, so the same input always gives the same cone, and each cone is kept
in the host cache (namespace `forecast`, keyed on a hash of the input and
the model's settings); a repeated request is answered from the cache, even
after a restart.
"""

import hashlib
import json
import math
import random

from prx_host import ModuleInfo, Stat

MODEL = "bootstrap of log returns"
MAX_POINTS = 10_000
MAX_HORIZON = 365


def parse(payload):
    """(closes, horizon) from an RPC payload, or ValueError saying what is wrong."""
    if not isinstance(payload, dict):
        raise ValueError('the payload must be an object: {"closes": [...], "horizon": N}')
    closes, horizon = payload.get("closes"), payload.get("horizon")
    if not isinstance(closes, list) or not 3 <= len(closes) <= MAX_POINTS:
        raise ValueError(f"closes must be a list of 3 to {MAX_POINTS} prices")
    for i, c in enumerate(closes):
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or c <= 0:
            raise ValueError(f"closes[{i}] = {c!r} is not a positive price")
    if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= MAX_HORIZON:
        raise ValueError(f"horizon must be a whole number of steps from 1 to {MAX_HORIZON}, not {horizon!r}")
    return [float(c) for c in closes], horizon


def log_returns(closes):
    return [math.log(b / a) for a, b in zip(closes, closes[1:])]


def quantile(ordered, q):
    """The q-quantile of sorted values, interpolating between neighbours."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def bootstrap_cone(closes, horizon, paths, window, seed):
    """The p10/p50/p90 cone of `paths` bootstrapped paths."""
    returns = log_returns(closes)[-window:]
    rng = random.Random(seed)
    draw = rng.choice
    # levels[step] holds the cumulative log return of every path at that step.
    cumulative = [0.0] * paths
    levels = []
    for _ in range(horizon):
        cumulative = [c + draw(returns) for c in cumulative]
        levels.append(sorted(cumulative))
    last = closes[-1]
    cone = {"p10": [], "p50": [], "p90": []}
    for ordered in levels:
        for name, q in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9)):
            cone[name].append(round(last * math.exp(quantile(ordered, q)), 4))
    return cone


def cache_key(closes, horizon, paths, window):
    text = json.dumps([MODEL, paths, window, horizon, closes], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class Forecaster:
    name = "forecast"

    def on_load(self, host, config=None):
        config = config or {}
        self.host = host
        self.paths = int(config.get("paths", "1000"))
        self.window = int(config.get("window", "250"))
        if self.paths < 10 or self.window < 2:
            raise ValueError("config: paths must be at least 10 and window at least 2")
        self.calls = self.hits = 0
        host.register_rpc("forecast", self._forecast)

    def _forecast(self, payload):
        closes, horizon = parse(payload)
        self.calls += 1
        key = cache_key(closes, horizon, self.paths, self.window)
        cached = self.host.cache_get("forecast", key)
        if cached is not None:
            self.hits += 1
            return cached
        cone = bootstrap_cone(closes, horizon, self.paths, self.window, seed=int(key[:16], 16))
        self.host.cache_put("forecast", key, cone)
        return cone

    def describe(self):
        return ModuleInfo(
            status="LOADED",
            stats=[
                Stat("model", lambda: f"{MODEL} ({self.paths} paths, last {self.window} returns)"),
                Stat("calls", lambda: self.calls),
                Stat("cache hits", lambda: self.hits),
            ],
        )
