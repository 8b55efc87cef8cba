"""Check a search's front for real: latency measured on each device and BLEU on the test split
(translation); test perplexity and measured memory (BERT).

Predicted latencies come from predictors trained on drift-corrected labels (brought to the
median reference time of their dataset with the fitted elasticity); a verified measurement is
corrected the same way with its own interleaved reference, so predicted and measured are compared
at the same machine speed.
Latency is measured in separated passes (every chosen architecture once per pass, pass after
pass), each pass scaled with its own reference; per device, verified.json keeps the median of
the pass medians raw (`measured_latency_ms`) and scaled (`measured_scaled_ms`), the scaled pass
medians (`measured_passes_ms`, raw: `measured_passes_raw_ms`), their interval
(`measured_interval_ms`, `measured_interval_coverage`), the flagged passes and the error of the
prediction against the scaled median (`latency_error_pct`).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devices import load_profile
from latency.dataset import arch_key, drift_factor, read_records
from latency.protocol import median_interval
from mos_search.errors import ConfigError
from mos_search.files import append_jsonl, read_json, read_text, split_lines, write_json_atomic
from mos_search.search.config import PEAK_MEMORY_COST
from mos_search.search.pick import HYPOTHESES_FILE

if TYPE_CHECKING:
    from mos_search.arch import Arch
    from mos_search.costs.elsewhere import Elsewhere
    from mos_search.costs.profiling import ArchModels

# verified.json fields (per device) filled from `measured_latency`'s keys
VERIFIED_FIELDS = {
    "raw_ms": "measured_latency_ms",
    "scaled_ms": "measured_scaled_ms",
    "passes_ms": "measured_passes_ms",
    "passes_raw_ms": "measured_passes_raw_ms",
    "interval_ms": "measured_interval_ms",
    "interval_coverage": "measured_interval_coverage",
    "flagged_passes": "measured_flagged_passes",
    "upper_ms": "measured_upper_ms",
}


def spread_pick(items: list[Any], count: int) -> list[Any]:
    """At most `count` items evenly spaced over the list, both ends included."""
    if count <= 0 or len(items) <= count:
        return list(items)
    if count == 1:
        return [items[0]]
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def pass_records(dataset: Path, digest: str, passes: int) -> dict[str, dict[int, dict[str, Any]]]:
    """Records of a verification dataset by arch key and pass (records without `pass`: pass 0;
    of two records for one arch and pass, the later)."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for r in read_records(dataset):
        if r.get("profile_digest") == digest and r.get("pass", 0) < passes:
            out.setdefault(arch_key(r["arch"]), {})[r.get("pass", 0)] = r
    return out


def measured_latency(
    by_pass: dict[int, dict[str, Any]],
    reference_ms: float | None,
    elasticity: float | None,
    confidence: float,
) -> dict[str, Any]:
    """One arch on one device from its pass records (ms).

    Each pass is brought to the predictor's reference speed round by round: repeat i is scaled
    with the reference run right after it, s_i = t_i * (reference_ms / r_i) ** elasticity (raw
    when the predictor was trained on raw times), so load that comes and goes within a pass
    moves a run and its reference together and widens the pass's interval instead of biasing
    it. A pass's value is the median of its s_i, its upper end the upper end of the
    order-statistic interval of that median at `confidence` (`latency.protocol.median_interval`).
    Records written before the per-round references were kept fall back to the pass's own
    interval scaled by the pass's reference statistic.

    `scaled_ms` is the median of the pass values; `upper_ms`, which budgets are judged on, the
    highest pass upper end; `interval_ms` the order-statistic interval of the median over the
    passes: with n passes and no more ranks to spare, their min and max, which cover the median
    of the pass-to-pass distribution with probability 1 - 2 * 0.5**n (75% at n = 3, 87.5% at 4,
    93.8% at 5); `interval_coverage` holds it.
    """
    records = [by_pass[p] for p in sorted(by_pass)]
    raw = [r["latency_ms"] for r in records]
    passes = [pass_scaled(r, reference_ms, elasticity, confidence) for r in records]
    scaled = [value for value, _ in passes]
    interval = median_interval(scaled, confidence)
    return {
        "raw_ms": statistics.median(raw),
        "scaled_ms": statistics.median(scaled),
        "passes_ms": scaled,
        "passes_raw_ms": raw,
        "interval_ms": [interval.low, interval.high],
        "interval_coverage": interval.coverage,
        "flagged_passes": sum(bool(r.get("flagged")) for r in records),
        "upper_ms": max(upper for _, upper in passes),
    }


def pass_scaled(
    record: dict[str, Any], reference_ms: float | None, elasticity: float | None, confidence: float
) -> tuple[float, float]:
    """(value, upper end) of one pass record at the predictor's reference speed (ms); see
    `measured_latency`."""
    rounds = record.get("reference_samples_ms")
    if rounds and len(rounds) == len(record.get("samples_ms", [])):
        per_round = [
            t * drift_factor(r, reference_ms, elasticity)
            for t, r in zip(record["samples_ms"], rounds)
        ]
        return statistics.median(per_round), median_interval(per_round, confidence).high
    factor = drift_factor(record.get("reference_ms"), reference_ms, elasticity)
    return record["latency_ms"] * factor, record.get("high_ms", record["latency_ms"]) * factor


MEASURED = "measured_{}.jsonl"  # a run's verification measurements of one device profile
MEASURED_MEMORY = "measured_memory.jsonl"  # a run's peak-memory measurements (one per arch)


def measure_peak_memory(
    run_dir: Path, archs: list[Arch], models: ArchModels, device: str
) -> dict[str, float]:
    """Peak memory (MiB) of each arch's deployment on `device` (`latency.memory`: both graphs in
    a fresh process running the profile's workload), by arch key. Measured once per arch into
    the run's `measured_memory.jsonl`, so an interrupted verification does not measure again."""
    import json
    import tempfile

    from latency.memory import bundle_peak_memory
    from mos_search.costs.profiling import translation_bundle

    profile = load_profile(device)
    path = run_dir / MEASURED_MEMORY
    done = {
        arch_key(r["arch"]): r["peak_memory_mib"]
        for r in (
            json.loads(line) for line in (split_lines(read_text(path)) if path.exists() else [])
        )
        if r.get("profile_digest") == profile.digest()
    }
    for arch in archs:
        key = arch_key(arch.to_dict())
        if key in done:
            continue
        with tempfile.TemporaryDirectory(prefix="mos-memory-") as tmp:
            bundle = translation_bundle(models.model(arch), "onnx", Path(tmp))
            measured = bundle_peak_memory(bundle, profile)
        done[key] = measured["peak_inference_mib"]
        append_jsonl(
            path,
            {"arch": arch.to_dict(), "peak_memory_mib": done[key], "profile": profile.name}
            | {"profile_digest": profile.digest(), "measurement": measured},
        )
    return done


def _profile_of(results: Path) -> str:
    """The profile name of the job beside an agent's results file."""
    from latency.jobs import read_job
    from mos_search.costs.elsewhere import JOB_FILE

    return read_job(Path(results).with_name(JOB_FILE)).profile.name


def _measure_front(
    run_dir: Path,
    devices: list[str],
    archs: list[Arch],
    models: ArchModels,
    passes: int,
    progress: bool,
    elsewhere: Elsewhere | None,
) -> None:
    """Measure `archs` in `passes` passes on every device into the run's `measured_*.jsonl`:
    here, on `elsewhere.remote`, or offline (bundles written and MeasurementsPending raised;
    their results merged from `elsewhere.imports` on the rerun, and refused while incomplete)."""
    from latency.profiler import todo
    from mos_search.costs.elsewhere import (
        RESULTS_FILE,
        Elsewhere,
        MeasurementsPending,
        export_bundles,
        import_results,
        measure_on_remote,
    )
    from mos_search.costs.profiling import measure_archs

    elsewhere = elsewhere or Elsewhere()
    merges = [
        import_results(r, run_dir / MEASURED.format(_profile_of(r))) for r in elsewhere.imports
    ]
    for merge in merges:
        if merge.missing():
            raise ConfigError(
                f"{merge.dataset} still lacks {merge.missing()} measurement(s) of the bundles: "
                "run their measure.sh to the end, then import again"
            )
    pending = []
    for device in devices:
        profile = load_profile(device)
        dataset = run_dir / MEASURED.format(profile.name)
        if elsewhere.export_bundles is not None:
            if todo([a.to_dict() for a in archs], dataset, profile.digest(), passes):
                folder = elsewhere.export_bundles / profile.name
                command = f"--verify-import {folder / RESULTS_FILE}"
                export_bundles(folder, profile, archs, models, dataset, command, True, passes)
                pending.append(folder)
            continue
        if elsewhere.imports:  # measured on the target only: never fill the gaps here
            if todo([a.to_dict() for a in archs], dataset, profile.digest(), passes):
                raise ConfigError(
                    f"{dataset} lacks measurements the imported results do not hold (another "
                    f"device, or more passes): write them with --verify-export-bundles"
                )
            continue
        if elsewhere.remote is not None:
            run = measure_on_remote(
                elsewhere.remote, profile, archs, models, dataset, True, progress, passes
            )
        else:
            run = measure_archs(profile, archs, models, dataset, True, progress, passes)
        if run.interrupted:
            raise KeyboardInterrupt
    if pending:
        imports = " ".join(f"--verify-import {p / RESULTS_FILE}" for p in pending)
        raise MeasurementsPending(
            f"verification waits for measurements: run measure.sh in "
            f"{', '.join(map(str, pending))} on the target, bring results.jsonl back beside "
            f"job.json, then rerun this search with --resume {imports}"
        )


def verify_front(
    run_dir: str | Path,
    checkpoint: str,
    data: str | None,
    drift: dict[str, tuple[float | None, float | None]],
    test_limit: int | None = 300,
    beam: int = 5,
    max_archs: int = 10,
    passes: int = 3,
    progress: bool = True,
    lenpen: float = 1.0,
    no_repeat_ngram_size: int = 0,
    elsewhere: Elsewhere | None = None,
    memory_device: str | None = None,
) -> list[dict[str, Any]]:
    """Measure and test-score (up to `max_archs` of) the front in `run_dir`; write verified.json.
    With `memory_device`, each arch's peak memory is measured on it too (`measure_peak_memory`):
    `measured_peak_memory_mib`, beside the search's bound `predicted_peak_memory_mib`.
    BLEU is decoded with `beam`, `lenpen` and `no_repeat_ngram_size` (`oracle/beam.py`).

    Latency is measured in `passes` separated passes (every chosen arch once, then the next
    pass), each run with the interleaved reference; see `measured_latency` for what is kept.
    Measurements append to `measured_<device>.jsonl` (one record per arch and pass) and BLEU
    scores are cached, so an interrupted verification resumes where it stopped. `elsewhere`
    measures on an SSH target, or writes bundles to measure offline (MeasurementsPending) and
    later merges their results (`costs.elsewhere`).
    """
    from mos_search.costs.profiling import ArchModels
    from mos_search.oracle.scoring import Oracle

    if passes < 1:
        raise ConfigError(f"verification passes: expected at least 1, found {passes}")
    run_dir = Path(run_dir)
    front_path = run_dir / "front.json"
    if not front_path.is_file():
        raise ConfigError(f"{run_dir} has no front.json: the search has not finished")
    chosen = spread_pick(read_json(front_path), max_archs)
    models = ArchModels.from_checkpoint(checkpoint)
    archs = [models.space.arch_from_dict(r["arch"]) for r in chosen]
    _measure_front(run_dir, list(drift), archs, models, passes, progress, elsewhere)
    measured: dict[str, dict[str, dict[str, Any]]] = {}
    for device, (ref_ms, elasticity) in drift.items():
        profile = load_profile(device)
        dataset = run_dir / MEASURED.format(profile.name)
        measured[device] = {
            key: measured_latency(by_pass, ref_ms, elasticity, profile.confidence)
            for key, by_pass in pass_records(dataset, profile.digest(), passes).items()
        }
    memory = (
        {} if memory_device is None else measure_peak_memory(run_dir, archs, models, memory_device)
    )
    oracle = Oracle(checkpoint, data, split="test", limit=test_limit)
    out = []
    hypotheses: dict[str, list[str]] = {}  # for the pick's paired test (search/pick.py)
    for record, arch in zip(chosen, archs):
        result = oracle.bleu(arch, beam, lenpen, no_repeat_ngram_size)
        hypotheses[arch_key(arch.to_dict())] = result.hypotheses
        row = {k: v for k, v in record.items() if k != "costs"}  # kept as predicted_latency_ms
        row.update(test_bleu=result.score, bleu_signature=result.signature, beam=beam)
        out.append(_with_measurements(row, record, list(drift), measured, memory))
    summary = {
        "split": "test",
        "sentences": len(oracle.data),
        "limit": test_limit,
        "beam": beam,
        "lenpen": lenpen,
        "no_repeat_ngram_size": no_repeat_ngram_size,
        "passes": passes,
        "checkpoint": str(oracle.checkpoint),
        "archs": out,
    }
    stored = {"references": list(oracle.data.references), "hypotheses": hypotheses}
    write_json_atomic(run_dir / HYPOTHESES_FILE, stored)
    write_json_atomic(run_dir / "verified.json", summary)
    return out


def _with_measurements(
    row: dict[str, Any],
    record: dict[str, Any],
    devices: list[str],
    measured: dict[str, dict[str, dict[str, Any]]],
    memory: dict[str, float],
) -> dict[str, Any]:
    """A verified.json row: the front `record`'s predictions beside what was measured of it on
    every device (`VERIFIED_FIELDS`, the prediction's error) and, if measured, its peak memory."""
    key = arch_key(record["arch"])
    row["predicted_latency_ms"] = {device: record["costs"][device] for device in devices}
    row.update({field: {} for field in VERIFIED_FIELDS.values()})
    row["latency_error_pct"] = {}
    for device in devices:
        m = measured[device][key]
        for name, field in VERIFIED_FIELDS.items():
            row[field][device] = m[name]
        predicted = row["predicted_latency_ms"][device]
        row["latency_error_pct"][device] = 100.0 * (predicted - m["scaled_ms"]) / m["scaled_ms"]
    if memory:
        row["measured_peak_memory_mib"] = memory[key]
        row["predicted_peak_memory_mib"] = record.get("bounds", {}).get(PEAK_MEMORY_COST)
    return row


def verify_bert_front(
    run_dir: str | Path,
    checkpoint: str,
    data: str | None,
    test_limit: int | None = 300,
    max_archs: int = 10,
    length: int = 128,
    threads: int = 1,
) -> list[dict[str, Any]]:
    """Test perplexity and memory of (up to `max_archs` of) a BERT front; writes verified.json.

    Memory per architecture: exact parameter bytes of the extracted encoder (fp32 and fp16) and
    the peak inference memory ONNX Runtime (CPU, `threads` threads) needs for one sequence of
    `length` tokens, measured in a fresh process on the exported encoder.
    """
    import tempfile

    from mos_search.costs.memory import encoder_memory
    from mos_search.models.onnx import export_bert_onnx
    from mos_search.oracle.scoring import Oracle

    run_dir = Path(run_dir)
    front_path = run_dir / "front.json"
    if not front_path.is_file():
        raise ConfigError(f"{run_dir} has no front.json: the search has not finished")
    chosen = spread_pick(read_json(front_path), max_archs)
    oracle = Oracle(checkpoint, data, split="test", limit=test_limit)
    vocab = oracle.loaded.vocab_size
    out = []
    for record in chosen:
        arch = oracle.space.arch_from_dict(record["arch"])
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = export_bert_onnx(oracle.loaded.sub_network(arch), tmp)
            memory = encoder_memory(arch, vocab, onnx_path, length, threads)
        out.append({**record, "test_perplexity": oracle.perplexity(arch), "memory": memory})
    summary = {
        "split": "test",
        "sentences": len(oracle.data),
        "limit": test_limit,
        "checkpoint": str(oracle.checkpoint),
        "memory_note": "onnxruntime_peak: VmHWM growth of a fresh process loading the encoder "
        f"and running batch 1 x {length} tokens (ONNX Runtime, CPU, {threads} thread)",
        "archs": out,
    }
    write_json_atomic(run_dir / "verified.json", summary)
    return out
