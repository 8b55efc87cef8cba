"""Check a search's front for real: latency measured on each device and BLEU on the test split
(translation); test perplexity and measured memory (BERT).

Predicted latencies come from predictors trained on drift-corrected labels (brought to the
median reference time of their dataset with the fitted elasticity); a verified measurement is
corrected the same way with its own interleaved reference, so predicted and measured are compared
at the same machine speed.
Both the raw and the scaled measurement are kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from devices import load_profile
from latency.dataset import arch_key, read_records
from mos_search.errors import ConfigError
from mos_search.files import write_json_atomic


def spread_pick(items: list[Any], count: int) -> list[Any]:
    """At most `count` items evenly spaced over the list, both ends included."""
    if count <= 0 or len(items) <= count:
        return list(items)
    if count == 1:
        return [items[0]]
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def verify_front(
    run_dir: str | Path,
    checkpoint: str,
    data: str | None,
    drift: dict[str, tuple[float | None, float | None]],
    test_limit: int | None = 300,
    beam: int = 5,
    max_archs: int = 10,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Measure and test-score (up to `max_archs` of) the front in `run_dir`; write verified.json.

    Measurements append to `measured_<device>.jsonl` and BLEU scores are cached, so an
    interrupted verification resumes where it stopped.
    """
    from mos_search.costs.profiling import ArchModels, measure_archs
    from mos_search.oracle.scoring import Oracle

    run_dir = Path(run_dir)
    front_path = run_dir / "front.json"
    if not front_path.is_file():
        raise ConfigError(f"{run_dir} has no front.json: the search has not finished")
    front = json.loads(front_path.read_text())
    chosen = spread_pick(front, max_archs)
    models = ArchModels.from_checkpoint(checkpoint)
    space = models.space
    archs = [space.arch_from_dict(r["arch"]) for r in chosen]
    measured: dict[str, dict[str, dict]] = {}
    for device in drift:
        profile = load_profile(device)
        dataset = run_dir / f"measured_{profile.name}.jsonl"
        run = measure_archs(profile, archs, models, dataset, progress=progress)
        if run.interrupted:
            raise KeyboardInterrupt
        measured[device] = {arch_key(r["arch"]): r for r in read_records(dataset)}
    oracle = Oracle(checkpoint, data, split="test", limit=test_limit)
    out = []
    for record, arch in zip(chosen, archs):
        result = oracle.bleu(arch, beam)
        row = {k: v for k, v in record.items() if k != "costs"}  # kept as predicted_latency_ms
        row.update(test_bleu=result.score, bleu_signature=result.signature, beam=beam)
        row["predicted_latency_ms"] = {device: record["costs"][device] for device in drift}
        row["measured_latency_ms"], row["measured_scaled_ms"], row["latency_error_pct"] = {}, {}, {}
        for device, (ref_ms, elasticity) in drift.items():
            m = measured[device][arch_key(arch.to_dict())]
            scaled = m["latency_ms"]
            if ref_ms and elasticity is not None and m.get("reference_ms"):
                scaled = m["latency_ms"] * (ref_ms / m["reference_ms"]) ** elasticity
            predicted = row["predicted_latency_ms"][device]
            row["measured_latency_ms"][device] = m["latency_ms"]
            row["measured_scaled_ms"][device] = scaled
            row["latency_error_pct"][device] = 100.0 * (predicted - scaled) / scaled
        out.append(row)
    summary = {
        "split": "test",
        "sentences": len(oracle.data),
        "limit": test_limit,
        "beam": beam,
        "checkpoint": str(oracle.checkpoint),
        "archs": out,
    }
    write_json_atomic(run_dir / "verified.json", summary)
    return out


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
    chosen = spread_pick(json.loads(front_path.read_text()), max_archs)
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
