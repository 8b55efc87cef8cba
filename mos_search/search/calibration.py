"""The day's latency calibration at the start of a search (`mos-search search --calibrate N`).

A predictor describes the machine on the day it was profiled; on another day (another machine of
the same kind, another load, another CPU) its labels can be off by far more than its intervals
allow (issue 29: the shipped onnxruntime-cpu predictor misses today's measurements by a factor
of 0.54 after drift correction). Before searching, `calibrate_devices` measures `N`
architectures of the space spread evenly over its parameter range (`spread_by_size`, seeded, so
the same N every time) on each device, with the interleaved reference, into the run folder, and
fits the day's correction on them: `LatencyPredictor.transfer`, the source's log-latency mapped
by a line plus a ridge-penalised linear term, its intervals from the leave-one-out residuals of
the N. The search, verification and the report use the calibrated predictor; `calibration.json`
records what was measured and fitted. An interrupted calibration resumes (the records are kept).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mos_search.files import write_json_atomic
from mos_search.search.config import SearchConfig

CALIBRATION_SEED = 0
CALIBRATION_FILE = "calibration.json"


def calibrated_path(out: Path, device: str) -> Path:
    """Where a run keeps its calibrated predictor of `device`."""
    from devices import load_profile

    return out / f"calibrated-{load_profile(device).name}.json"


def calibrate_devices(
    config: SearchConfig,
    out: Path,
    source_of: Callable[[int], Path],
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure `config.calibrate` architectures on every device of `config` and write each
    device's calibrated predictor (`calibrated_path`) from its source predictor
    (`source_of(index)`); returns and writes the summary (`calibration.json`). Raises
    KeyboardInterrupt when the measuring is interrupted (rerun with --resume to go on)."""
    from devices import load_profile
    from mos_search.costs.predictors import transfer_predictor
    from mos_search.costs.profiling import ArchModels, measure_archs, spread_by_size
    from mos_search.models.build import count_arch_parameters

    if config.oracle is None or not config.calibrate:
        raise ValueError("calibrate_devices: the search settings ask for no calibration")
    models = ArchModels.from_checkpoint(config.oracle.checkpoint)
    space, vocab = models.space, models.vocab_size
    archs = spread_by_size(
        space, lambda a: count_arch_parameters(space, a, vocab), config.calibrate, CALIBRATION_SEED
    )
    summary: dict[str, Any] = {"architectures": len(archs), "seed": CALIBRATION_SEED, "devices": {}}
    for index, device in enumerate(config.devices):
        profile = load_profile(device)
        dataset = out / f"calibration_{profile.name}.jsonl"
        echo(f"calibrating {device}: measuring {len(archs)} architectures -> {dataset}")
        run = measure_archs(profile, archs, models, dataset)
        if run.interrupted:
            raise KeyboardInterrupt
        source = source_of(index)
        report = transfer_predictor(source, dataset, calibrated_path(out, device), space=space)
        fit = report.test
        summary["devices"][device] = {
            "source": str(source),
            "dataset": dataset.name,
            "records": report.n_train,
            "predictor": calibrated_path(out, device).name,
            "in_sample_mape": fit.mape,
            "in_sample_coverage_80": fit.coverage_80,
            "in_sample_coverage_95": fit.coverage_95,
        }
        echo(
            f"calibrated {device} on {report.n_train} architectures: in-sample MAPE "
            f"{fit.mape:.1f}% (intervals from leave-one-out residuals)"
        )
    write_json_atomic(out / CALIBRATION_FILE, summary)
    return summary
