"""The demo's story: every stage of `stages.stages` in order, each skipped when done, its wall
time kept in `demo.json`, then the summary of the exported model."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from mos_search.demo.folder import DEVICE, DemoConfig, DemoFolder
from mos_search.demo.stages import DemoStage, stages
from mos_search.files import check_writable_dir, read_json, write_json_atomic


class StageClock:
    """Times the stages and records them in `demo.json` (times add up across reruns)."""

    def __init__(self, folder: DemoFolder) -> None:
        self.folder, self.path = folder, folder.root / "demo.json"
        self.record: dict[str, Any] = read_json(self.path) if self.path.exists() else {"stages": {}}

    def run(self, stage: DemoStage) -> None:
        """Run `stage` unless it is done; keep its wall time."""
        echo = self.folder.echo
        if stage.done(self.folder):
            echo(f"[{stage.name}] already done, skipped")
            return
        echo(f"[{stage.name}] ...")
        started = time.perf_counter()
        stage.work(self.folder)
        spent = time.perf_counter() - started
        times = self.record["stages"]
        times[stage.name] = times.get(stage.name, 0.0) + spent
        write_json_atomic(self.path, self.record)
        echo(f"[{stage.name}] done in {spent:.0f} s")


def run_demo(config: DemoConfig, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or continue) every stage of the demo; returns the summary written to `demo.json`."""
    folder = DemoFolder(config, echo)
    check_writable_dir(folder.root)
    folder.check_same_demo()
    folder.root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder.root / "config.json", asdict(folder.config))
    clock = StageClock(folder)
    for stage in stages(folder):
        clock.run(stage)
    clock.record["summary"] = summary(folder, clock.record["stages"])
    write_json_atomic(clock.path, clock.record)
    return clock.record["summary"]


def summary(folder: DemoFolder, stage_seconds: dict[str, float]) -> dict[str, Any]:
    """Stage times, the budget, the exported model's figures and where the report is."""
    from mos_search.search.pick import measured_upper_ms

    card = read_json(folder.model / "card.json")
    latency = card["latency"][DEVICE]
    verified = read_json(folder.search / "verified.json")["archs"]
    row = next(v for v in verified if v["arch"] == card["arch"])
    budget_ms = folder.budget_ms()
    return {
        "stages_seconds": stage_seconds,
        "total_seconds": sum(stage_seconds.values()),
        "budget_ms": budget_ms,
        "model": {
            "arch": card["arch"],
            "params": card["params"],
            "test_bleu": card["bleu"]["onnxruntime"],
            "test_sentences": card["bleu"]["sentences"],
            "latency_ms": latency["latency_ms"],
            "low_ms": latency["low_ms"],
            "high_ms": latency["high_ms"],
            "reference_ms": latency["reference_ms"],
            "device": DEVICE,
            # verification, at the predictor's reference speed: what the budget is about
            "verified_ms": row["measured_scaled_ms"][DEVICE],
            "verified_upper_ms": measured_upper_ms(row, DEVICE),
            "meets_budget": measured_upper_ms(row, DEVICE) <= budget_ms,
        },
        "report": str(folder.search / "report" / "index.html"),
    }
