"""ONNX Runtime vs eager PyTorch on the CPU, and the repeatability of the measurements.

For the same sub-networks of one space, in one run:
1. every architecture's HAT workload on `onnxruntime-cpu` and on `torch-cpu`, alternated run by
   run with the reference workload (`latency.protocol.measure_pair`; the ORT profile's warm-ups
   and repeats): the ratio torch / ORT as the median of the paired ratios, with its interval;
2. repeatability: an ORT pass before and one after the paired pass (minutes apart), with the
   interleaved reference workload; the median relative difference between the two passes, raw and
   drift-corrected (every time brought to one typical reference speed, proportionally and with the
   elasticity fitted on the profiling dataset, and round by round: the median of each run's time
   over the reference run right after it, `Measurement.reference_ratio`).
Prints a table and writes JSON. Run it alone: anything else on 2 cores skews the timings.

    python bench/latency.py --space cpu-small --archs 20
    python bench/latency.py --space cpu-small --archs 20 --pin 1 --repeats 40  # the floor's causes
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# This script shares its name with the `latency` package: keep its folder from shadowing it.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from devices import load_profile, open_device  # noqa: E402
from latency.protocol import PairMeasurement, measure, measure_pair  # noqa: E402
from latency.workloads import workload_for  # noqa: E402
from mos_search.costs.predictors import shipped_path  # noqa: E402
from mos_search.costs.profiling import ArchModels, sample_archs, translation_bundle  # noqa: E402
from mos_search.models.transformer import count_parameters  # noqa: E402
from mos_search.space import load_space  # noqa: E402


def ort_pass(archs, models, profile, reference, work: Path) -> list[tuple[float, float, float]]:
    """(seconds, reference seconds, per-round ratio to the reference) of every arch on ONNX
    Runtime."""
    device, ref_device = open_device(profile), open_device(profile)
    ref_device.load(reference)
    ref_work = workload_for(ref_device, reference, profile)
    out = []
    for i, arch in enumerate(archs):
        bundle = translation_bundle(models.model(arch), "onnx", work / f"a{i}")
        device.load(bundle)
        m = measure(device, workload_for(device, bundle, profile), profile, (ref_device, ref_work))
        out.append((m.seconds, m.reference_seconds, m.reference_ratio))
    return out


def paired_pass(archs, models, ort_profile, torch_profile, reference, work: Path) -> list:
    """torch-cpu against onnxruntime-cpu, alternated run by run per arch, with the reference."""
    ort, torch_device, ref_device = (
        open_device(p) for p in (ort_profile, torch_profile, ort_profile)
    )
    ref_device.load(reference)
    ref_work = workload_for(ref_device, reference, ort_profile)
    out: list[PairMeasurement] = []
    for i, arch in enumerate(archs):
        model = models.model(arch)
        ort_bundle = translation_bundle(model, "onnx", work / f"p{i}")
        torch_bundle = translation_bundle(model, "torch", work / f"p{i}")
        ort.load(ort_bundle)
        torch_device.load(torch_bundle)
        out.append(
            measure_pair(
                ort,
                workload_for(ort, ort_bundle, ort_profile),
                torch_device,
                workload_for(torch_device, torch_bundle, torch_profile),
                ort_profile,
                (ref_device, ref_work),
            )
        )
    return out


def summarize(result: dict, elasticity: float, vocab_size: int, space) -> dict:
    """Print the table; the ratio and the repeatability, raw and drift-corrected.

    Both passes are brought to one typical speed (the median reference time over both passes):
    proportionally (elasticity 1) and with the elasticity fitted on the profiling dataset.
    """
    first, second, torch_times = result["ort_pass1"], result["ort_pass2"], result["torch"]
    # paired ratios (this version); older results hold torch and ORT timed at different moments
    paired = result.get("torch_over_ort") or [t / a for t, (a, _) in zip(torch_times, first)]
    ort_paired = result.get("ort_paired") or [p[0] for p in first]
    archs = [space.arch_from_dict(a) for a in result["archs"]]
    typical = statistics.median([p[1] for p in first] + [p[1] for p in second])

    def corrected(seconds: float, ref: float, power: float) -> float:
        return seconds * (typical / ref) ** power

    raw_diff, proportional_diff, fitted_diff, round_diff, ratios = [], [], [], [], []
    print(
        f"{'arch':>4}{'params M':>10}{'ORT ms':>9}{'pass-2 ms':>10}{'raw diff':>10}"
        f"{'prop diff':>10}{'fit diff':>10}{'round diff':>11} |"
        f" paired:{'ORT ms':>8}{'torch ms':>10}{'torch/ORT':>10}"
    )
    for i, arch in enumerate(archs):
        (a, ra, *qa), (b, rb, *qb) = first[i], second[i]
        raw_diff.append(abs(b - a) / a)
        for power, out in ((1.0, proportional_diff), (elasticity, fitted_diff)):
            ca, cb = corrected(a, ra, power), corrected(b, rb, power)
            out.append(abs(cb - ca) / ca)
        if qa and qb:  # older results hold no per-round ratios
            round_diff.append(abs(qb[0] - qa[0]) / qa[0])
        ratios.append(paired[i])
        params = count_parameters(arch, vocab_size, space.qkv_dim, space.share_embeddings) / 1e6
        print(
            f"{i:>4}{params:>10.2f}{a * 1000:>9.1f}{b * 1000:>10.1f}{raw_diff[-1] * 100:>9.1f}%"
            f"{proportional_diff[-1] * 100:>9.1f}%{fitted_diff[-1] * 100:>9.1f}%"
            f"{(round_diff[-1] * 100 if round_diff else math.nan):>10.1f}% |        "
            f"{ort_paired[i] * 1000:>8.1f}{torch_times[i] * 1000:>10.1f}{ratios[-1]:>10.2f}"
        )
    own_diff, own_elasticities = own_data_repeatability(first, second, typical)
    summary = {
        "median_repeat_diff_own_elasticity": statistics.median(own_diff),
        "own_elasticity_median": statistics.median(own_elasticities),
        "median_torch_over_ort": statistics.median(ratios),
        "median_repeat_diff_raw": statistics.median(raw_diff),
        "median_repeat_diff_proportional": statistics.median(proportional_diff),
        "median_repeat_diff_fitted": statistics.median(fitted_diff),
        "median_repeat_diff_per_round": statistics.median(round_diff) if round_diff else None,
        "elasticity": elasticity,
        "largest_over_smallest_ort": first[0][0] / first[1][0],
    }
    print(
        f"median torch/ORT {summary['median_torch_over_ort']:.2f}x; repeatability (median "
        f"|pass2-pass1|/pass1): raw {summary['median_repeat_diff_raw'] * 100:.1f}%, "
        f"proportional correction {summary['median_repeat_diff_proportional'] * 100:.1f}%, "
        f"fitted elasticity {elasticity:.2f}: {summary['median_repeat_diff_fitted'] * 100:.1f}%, "
        f"per-round ratio: {(summary['median_repeat_diff_per_round'] or math.nan) * 100:.1f}%, "
        f"this run's own elasticity (leave-one-arch-out, median "
        f"{summary['own_elasticity_median']:.2f}): "
        f"{summary['median_repeat_diff_own_elasticity'] * 100:.1f}%; "
        f"largest/smallest (ORT) {summary['largest_over_smallest_ort']:.2f}x"
    )
    return summary


def own_data_repeatability(
    first: list, second: list, typical: float
) -> tuple[list[float], list[float]]:
    """Repeatability with the drift correction checked on this run's own data: for each
    architecture, the elasticity is fitted on the two passes of the *other* architectures
    (within-architecture slope of log time on log reference, `fit_drift_elasticity_repeated`),
    then both of its passes are corrected with it. Returns the relative differences and the
    elasticities used (1.0 where the other archs' references did not move enough to fit one)."""
    from latency.dataset import fit_drift_elasticity_repeated

    records = [
        {"arch": {"i": i}, "features": [0.0], "latency_ms": s * 1000, "reference_ms": r * 1000}
        for i, passes in enumerate(zip(first, second))
        for s, r, *_ in passes
    ]
    diffs, used = [], []
    for i, ((a, ra, *_), (b, rb, *_)) in enumerate(zip(first, second)):
        others = [r for r in records if r["arch"]["i"] != i]
        power = fit_drift_elasticity_repeated(others)
        power = 1.0 if power is None else power
        ca, cb = a * (typical / ra) ** power, b * (typical / rb) ** power
        diffs.append(abs(cb - ca) / ca)
        used.append(power)
    return diffs, used


def dataset_elasticity(path: str) -> float:
    """The drift elasticity fitted on a profiling dataset (1.0 when there is none)."""
    from latency.dataset import fit_drift_elasticity, read_records

    return fit_drift_elasticity(read_records(path)) if Path(path).exists() else 1.0


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo) and torch's CPU capability."""
    import torch

    name = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    return f"{name} ({torch.backends.cpu.get_cpu_capability()})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="cpu-small")
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="bench/results/latency.json")
    parser.add_argument(
        "--dataset",
        default=str(shipped_path("onnxruntime-cpu", "latency.jsonl")),
        help="profiling dataset the drift elasticity is fitted on [default: the shipped one]",
    )
    parser.add_argument("--summarize", help="recompute the summary of a saved result JSON")
    parser.add_argument(
        "--repeats", type=int, help="timed rounds per measurement [default: the profile's, 20]"
    )
    parser.add_argument(
        "--pin", help="run on these CPUs only (os.sched_setaffinity), e.g. 1 or 0,1"
    )
    args = parser.parse_args()
    if args.pin:
        os.sched_setaffinity(0, {int(c) for c in args.pin.split(",")})

    space = load_space(args.space)
    elasticity = dataset_elasticity(args.dataset)
    if args.summarize:
        result = json.loads(Path(args.summarize).read_text())
        result.pop("median_repeat_diff_corrected", None)  # an older, per-pass correction
        result.update(summarize(result, elasticity, result["args"]["vocab_size"], space))
        Path(args.summarize).write_text(json.dumps(result, indent=1))
        print(f"updated {args.summarize}")
        return
    models = ArchModels(space, args.vocab_size)
    archs = sample_archs(space, args.archs, args.seed)
    ort_profile, torch_profile = load_profile("onnxruntime-cpu"), load_profile("torch-cpu")
    if args.repeats:
        ort_profile = dataclasses.replace(ort_profile, repeats=args.repeats)
        torch_profile = dataclasses.replace(torch_profile, repeats=args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        reference = translation_bundle(models.model(space.smallest()), "onnx", work / "ref")
        started = time.perf_counter()
        first = ort_pass(archs, models, ort_profile, reference, work)
        pass_seconds = time.perf_counter() - started
        pairs = paired_pass(archs, models, ort_profile, torch_profile, reference, work)
        second = ort_pass(archs, models, ort_profile, reference, work)
    print(f"one ORT pass over {len(archs)} architectures: {pass_seconds:.0f} s")
    result = {
        "args": vars(args),
        "ort_pass_seconds": pass_seconds,
        "cpu": cpu_name(),
        "archs": [a.to_dict() for a in archs],
        "ort_pass1": first,
        "ort_pass2": second,
        "torch": [p.b.seconds for p in pairs],
        "ort_paired": [p.a.seconds for p in pairs],
        "torch_over_ort": [p.ratio for p in pairs],
        "torch_over_ort_interval": [[p.ratio_low, p.ratio_high] for p in pairs],
        "torch_over_ort_coverage": [p.ratio_coverage for p in pairs],
    }
    result.update(summarize(result, elasticity, args.vocab_size, space))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
