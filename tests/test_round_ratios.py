"""Verification intervals from per-round ratios (issue 28): a synthetic machine whose speed
changes within a pass, on a clock the test controls.

The measured workload takes 10 ms and the reference 5 ms on an idle machine; for 7 of the 20
rounds of a pass (rounds 3-9) a load doubles every time, the measured run and the reference run
right after it alike. The predictor's reference speed is the idle one (5 ms). So the model's true
latency at that speed is 10 ms, and a 15 ms budget holds with room to spare.

The old bound scaled the pass's upper end (the order statistic x(15) of 20 raw samples: a loaded
run, 20 ms) by the pass's reference median (an idle run, 5 ms): 20 ms, over the budget. Scaling
round by round first makes every round 10 ms: the bound holds.
"""

from __future__ import annotations

import pytest

from devices import Device, DeviceProfile
from latency.dataset import drift_factor
from latency.profiler import measurement_fields, measurement_from_record
from latency.protocol import measure
from mos_search.search.verify import measured_latency

IDLE_MS, REFERENCE_MS, BUDGET_MS = 10.0, 5.0, 15.0
LOADED_ROUNDS = range(3, 10)  # 7 of 20


class SyntheticMachine:
    """A clock the test controls: every timed run takes its idle time times the load of the
    round it falls in (a round: the measured run, then the reference)."""

    def __init__(self, loaded_rounds, factor: float = 2.0, runs_per_round: int = 2) -> None:
        self.loaded, self.factor, self.per_round = set(loaded_rounds), factor, runs_per_round
        self.timed = 0  # warm-ups run the work without timing it

    def run_ms(self, idle_ms: float) -> float:
        round_index = self.timed // self.per_round
        self.timed += 1
        return idle_ms * (self.factor if round_index in self.loaded else 1.0)


class SyntheticDevice(Device):
    """A device whose `time` reads the synthetic machine's clock instead of a real one."""

    name = "synthetic"

    def __init__(self, profile: DeviceProfile, machine: SyntheticMachine, idle_ms: float):
        super().__init__(profile)
        self.machine, self.idle_ms = machine, idle_ms

    def time(self, work) -> float:
        work()
        return self.machine.run_ms(self.idle_ms) / 1000

    put = fetch = zeros = argmax = repeat_batch = _load_graph = _run = None


PROFILE = DeviceProfile(
    name="synthetic", backend="synthetic", warmups=2, repeats=20, retries=0, max_spread=10.0
)


def one_pass(loaded_rounds=LOADED_ROUNDS) -> dict:
    """A pass record as verification writes it, measured by the real protocol."""
    machine = SyntheticMachine(loaded_rounds)
    measured = SyntheticDevice(PROFILE, machine, IDLE_MS)
    reference = SyntheticDevice(PROFILE, machine, REFERENCE_MS)
    result = measure(measured, lambda: None, PROFILE, (reference, lambda: None))
    return {"arch": {"n": 1}, **measurement_fields(result), "pass": 0}


def old_upper_ms(record: dict) -> float:
    """The bound before per-round ratios: the pass's own upper end, scaled by its reference."""
    return record["high_ms"] * drift_factor(record["reference_ms"], REFERENCE_MS, 1.0)


def test_the_synthetic_pass_is_what_the_docstring_says():
    record = one_pass()
    assert sorted(record["samples_ms"]) == [IDLE_MS] * 13 + [2 * IDLE_MS] * 7
    assert record["reference_ms"] == REFERENCE_MS  # the reference's median: an idle run
    assert record["high_ms"] == 2 * IDLE_MS  # x(15) of 20: a loaded run
    loaded = [i for i, r in enumerate(record["reference_samples_ms"]) if r > REFERENCE_MS]
    assert loaded == list(LOADED_ROUNDS)


def test_load_within_a_pass_breaks_the_old_bound_and_not_the_per_round_one():
    passes = {p: {**one_pass(), "pass": p} for p in range(3)}
    assert all(old_upper_ms(r) > BUDGET_MS for r in passes.values())  # the old bound failed
    m = measured_latency(passes, REFERENCE_MS, elasticity=1.0, confidence=0.95)
    assert m["upper_ms"] == pytest.approx(IDLE_MS)  # every round scaled to 10 ms
    assert m["upper_ms"] <= BUDGET_MS
    assert m["scaled_ms"] == pytest.approx(IDLE_MS)


def test_load_that_hits_the_run_and_not_its_reference_widens_the_interval():
    """A load that slows only measured runs (the reference is idle) is real slowness to the
    per-round ratios: the upper end grows with it, it is not divided out."""
    record = one_pass(loaded_rounds=())
    record["samples_ms"] = [IDLE_MS * (1.5 if i % 3 == 0 else 1.0) for i in range(20)]
    m = measured_latency({0: record}, REFERENCE_MS, elasticity=1.0, confidence=0.95)
    assert m["scaled_ms"] == pytest.approx(IDLE_MS)
    assert m["upper_ms"] == pytest.approx(1.5 * IDLE_MS)


def test_records_without_per_round_references_keep_the_old_rule():
    record = one_pass()
    del record["reference_samples_ms"]
    m = measured_latency({0: record}, REFERENCE_MS, elasticity=1.0, confidence=0.95)
    assert m["upper_ms"] == pytest.approx(old_upper_ms(record))


def test_per_round_references_survive_the_record_round_trip():
    record = one_pass()
    again = measurement_fields(measurement_from_record(record))
    assert again["reference_samples_ms"] == record["reference_samples_ms"]
