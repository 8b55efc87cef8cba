"""`export --quantize int8`: ONNX Runtime dynamic int8 quantization of both graphs, re-scored,
and timed against float32 run by run."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from mos_search.deploy.parity import onnx_bleu
from mos_search.files import sha256_file


def quantize_int8(model_dir: Path) -> Path:
    """ONNX Runtime dynamic int8 quantization of both graphs into `model_dir/int8/`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = model_dir / "int8"
    out.mkdir(exist_ok=True)
    for name in ("encoder.onnx", "decoder_step.onnx"):
        quantize_dynamic(str(model_dir / name), str(out / name), weight_type=QuantType.QInt8)
    shutil.copy(model_dir / "spm.model", out / "spm.model")
    return out


def int8_section(
    out: Path,
    sources: list[list[int]],
    references: list[str],
    decoding: dict[str, Any],
    fp32_bleu: float,
    latency: dict[str, dict],
    shapes: Any,
    space: Any,
) -> dict[str, Any]:
    """Quantize to `out/int8/`, re-score (fp32's `decoding`), and time int8 against fp32
    alternately, run by run (int8, fp32, reference, int8, ...: `latency.protocol.measure_pair`),
    on every device of `latency`; the speed-up is the median of the per-run fp32/int8 ratios
    with its interval."""
    from devices import load_profile
    from latency.protocol import measure_pair
    from mos_search.costs.profiling import exported_runs, folder_bundle, latency_entry
    from mos_search.deploy.translate import OnnxTranslator

    int8_dir = quantize_int8(out)
    int8_bleu = onnx_bleu(OnnxTranslator(int8_dir), sources, references, **decoding)["onnxruntime"]
    bundles = [folder_bundle(d, shapes.past_shapes, shapes.vocab_size) for d in (int8_dir, out)]
    pairs = {}
    for device in latency:
        profile = load_profile(device)
        with exported_runs(profile, bundles, space, shapes.vocab_size) as (runs, reference):
            pairs[device] = (profile, measure_pair(*runs[0], *runs[1], profile, reference))
    return {
        "bleu_onnxruntime": int8_bleu,
        "bleu_change": int8_bleu - fp32_bleu,
        "latency": {d: latency_entry(prof, [pair.a]) for d, (prof, pair) in pairs.items()},
        "fp32_latency_paired": {d: latency_entry(p, [pair.b]) for d, (p, pair) in pairs.items()},
        "speedup": {d: pair.ratio for d, (_, pair) in pairs.items()},
        "speedup_interval": {
            d: [pair.ratio_low, pair.ratio_high] for d, (_, pair) in pairs.items()
        },
        "speedup_coverage": {d: pair.ratio_coverage for d, (_, pair) in pairs.items()},
        "speedup_ratios": {d: pair.ratios for d, (_, pair) in pairs.items()},  # fp32/int8 a round
        "files": {
            n: sha256_file(int8_dir / n) for n in ("encoder.onnx", "decoder_step.onnx", "spm.model")
        },
    }
