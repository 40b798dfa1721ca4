import csv
import pathlib

import pytest

import plugin
from prx_pdk.testing import FakeHost

DATA = pathlib.Path(__file__).parent.parent / "data" / "ibm-monthly.csv"


def closes():
    with DATA.open() as f:
        return [float(row["close"]) for row in csv.DictReader(f)]


def test_the_cone_is_ordered_and_has_horizon_points():
    cone = plugin.bootstrap_cone(closes(), 12, paths=500, window=250, seed=7)
    assert sorted(cone) == ["p10", "p50", "p90"]
    for step in range(12):
        assert 0 < cone["p10"][step] <= cone["p50"][step] <= cone["p90"][step]
        assert len(cone["p50"]) == 12
    # The cone widens with the horizon.
    assert cone["p90"][-1] - cone["p10"][-1] > cone["p90"][0] - cone["p10"][0]


def test_same_input_same_cone_and_the_second_call_is_cached():
    with FakeHost(config={"paths": "200"}) as fake:
        fake.load(plugin.Forecaster)
        assert fake.rpcs == ["forecast"]
        payload = {"closes": closes(), "horizon": 6}
        first = fake.rpc("forecast", payload)
        second = fake.rpc("forecast", payload)
        assert first == second
        assert len(fake.cache) == 1
        status, stats = fake.describe()
        assert status == "LOADED"
        assert ("cache hits", "1") in stats and ("calls", "2") in stats


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"closes": [1, 2], "horizon": 3}, "closes must be a list"),
        ({"closes": [1, 2, -3], "horizon": 3}, r"closes\[2\] = -3"),
        ({"closes": [1, 2, 3], "horizon": 0}, "horizon must be"),
        ([1, 2, 3], "must be an object"),
    ],
)
def test_bad_payloads_say_what_is_wrong(payload, message):
    with pytest.raises(ValueError, match=message):
        plugin.parse(payload)
