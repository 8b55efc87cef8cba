"""Day-to-day latency drift: one fixed panel of cpu-small architectures profiled on occasions
hours apart, and how much each architecture's drift-corrected latency moves between them.

Each occasion profiles the panel (`bench/drift/panel.json`: 40 architectures spread evenly over
cpu-small's parameter range, fixed once) on `onnxruntime-cpu`, every run interleaved with the
reference workload as `mos-search profile` does, into `bench/results/drift/OCCASION.jsonl`.
Run each occasion alone on the machine. The report corrects every record to the shipped
predictor's reference speed (its drift elasticity), then for every pair of occasions and every
architecture takes the log ratio of the two corrected latencies, and splits it into a shared
factor (the pair's median log ratio) and what depends on the architecture (the rest, and its
Spearman correlation with parameter count and with the encoder's share of the parameters).
Printed: median and 90th percentile of the absolute relative change, before and after removing
the shared factor; with three occasions or more, the leave-one-occasion-out coverage of the
intervals without and with the between-occasion component, and the day's calibration from 20
architectures (`leave_one_occasion_out`); written: `bench/results/drift/summary.json`.

    python bench/drift.py --make-panel            # once; commit bench/drift/panel.json
    python bench/drift.py --occasion "$(date -u +%Y%m%dT%H%M)"   # alone, hours apart
    python bench/drift.py --report
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

# bench/latency.py shares its name with the `latency` package: keep this folder off the path.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from devices import load_profile  # noqa: E402
from latency.dataset import drift_factor, read_records, record_key  # noqa: E402
from latency.predictor import LatencyPredictor  # noqa: E402
from mos_search.costs.predictors import shipped_path  # noqa: E402
from mos_search.costs.profiling import ArchModels, measure_archs  # noqa: E402
from mos_search.fidelity.size_quality import spread_by_size  # noqa: E402
from mos_search.models.transformer import count_parameters  # noqa: E402
from mos_search.space import load_space  # noqa: E402

HERE = Path(__file__).resolve().parent
PANEL = HERE / "drift" / "panel.json"
RESULTS = HERE / "results" / "drift"
DEVICE, SPACE, VOCAB, PANEL_SIZE = "onnxruntime-cpu", "cpu-small", 8000, 40


def params_of(space, arch) -> int:
    return count_parameters(arch, VOCAB, space.qkv_dim, space.share_embeddings)


def encoder_share(space, arch) -> float:
    """The encoder's share of the model's parameters (embedding excluded on both sides)."""
    d = arch.to_dict()
    enc = sum(2 * d["encoder_embed_dim"] * f for f in d["encoder_ffn_dims"])
    enc += d["encoder_layers"] * 4 * d["encoder_embed_dim"] * space.qkv_dim
    dec = sum(2 * d["decoder_embed_dim"] * f for f in d["decoder_ffn_dims"])
    dec += d["decoder_layers"] * 8 * d["decoder_embed_dim"] * space.qkv_dim
    return enc / (enc + dec)


def make_panel() -> None:
    space = load_space(SPACE)
    archs = spread_by_size(space, lambda a: params_of(space, a), PANEL_SIZE, seed=0)
    PANEL.parent.mkdir(parents=True, exist_ok=True)
    PANEL.write_text(json.dumps([a.to_dict() for a in archs], indent=1) + "\n")
    print(f"wrote {PANEL}: {len(archs)} architectures of {SPACE}")


def occasion(name: str) -> None:
    space = load_space(SPACE)
    archs = [space.arch_from_dict(a) for a in json.loads(PANEL.read_text())]
    out = RESULTS / f"{name}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    run = measure_archs(load_profile(DEVICE), archs, ArchModels.fresh(space, VOCAB), out)
    stopped = " (interrupted: rerun the same occasion to finish it)" if run.interrupted else ""
    print(f"wrote {out}: {len(read_records(out))} records{stopped}")


def corrected_by_occasion() -> dict[str, dict[str, float]]:
    """Occasion -> arch key -> latency at the shipped predictor's reference speed (ms)."""
    meta = LatencyPredictor.load(shipped_path(DEVICE)).meta
    out = {}
    for path in sorted(RESULTS.glob("*.jsonl")):
        out[path.stem] = {
            record_key(r): r["latency_ms"]
            * drift_factor(r.get("reference_ms"), meta["reference_ms"], meta["drift_elasticity"])
            for r in read_records(path)
        }
    return out


def report() -> None:
    from scipy.stats import spearmanr

    space = load_space(SPACE)
    panel = [space.arch_from_dict(a) for a in json.loads(PANEL.read_text())]
    keys = [record_key({"arch": a.to_dict()}) for a in panel]
    size = np.array([params_of(space, a) for a in panel], dtype=float)
    share = np.array([encoder_share(space, a) for a in panel])
    occasions = corrected_by_occasion()
    pairs = []
    for a, b in itertools.combinations(sorted(occasions), 2):
        common = [i for i, k in enumerate(keys) if k in occasions[a] and k in occasions[b]]
        ratio = np.log([occasions[b][keys[i]] / occasions[a][keys[i]] for i in common])
        shared = float(np.median(ratio))
        rest = ratio - shared
        pairs.append(
            {
                "from": a,
                "to": b,
                "archs": len(common),
                "shared_factor": float(np.exp(shared)),
                "abs_change_median_pct": float(np.median(np.abs(np.expm1(ratio))) * 100),
                "abs_change_p90_pct": float(np.percentile(np.abs(np.expm1(ratio)), 90) * 100),
                "after_factor_median_pct": float(np.median(np.abs(np.expm1(rest))) * 100),
                "after_factor_p90_pct": float(np.percentile(np.abs(np.expm1(rest)), 90) * 100),
                "rho_rest_params": float(spearmanr(rest, size[common]).statistic),
                "rho_rest_encoder_share": float(spearmanr(rest, share[common]).statistic),
            }
        )
    header = f"{'from':<15}{'to':<15}{'n':>4}{'factor':>8}{'med %':>7}{'p90 %':>7}"
    print(header + f"{'med* %':>8}{'p90* %':>8}{'rho size':>9}{'rho enc':>8}")
    for p in pairs:
        print(
            f"{p['from']:<15}{p['to']:<15}{p['archs']:>4}{p['shared_factor']:>8.3f}"
            f"{p['abs_change_median_pct']:>7.2f}{p['abs_change_p90_pct']:>7.2f}"
            f"{p['after_factor_median_pct']:>8.2f}{p['after_factor_p90_pct']:>8.2f}"
            f"{p['rho_rest_params']:>9.2f}{p['rho_rest_encoder_share']:>8.2f}"
        )
    print("(* after dividing out the pair's shared factor)")
    summary = {"occasions": sorted(occasions), "pairs": pairs}
    if len(occasions) >= 3:
        summary["leave_one_occasion_out"] = leave_one_occasion_out()
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {RESULTS / 'summary.json'}")


def _write(records: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _accuracy(predictor, records: list[dict]) -> dict:
    """Accuracy of `predictor` on `records`, labels corrected with its own drift model."""
    from latency.accuracy import accuracy

    meta = predictor.meta
    x = np.array([r["features"] for r in records])
    y = np.array(
        [
            r["latency_ms"]
            * drift_factor(r.get("reference_ms"), meta["reference_ms"], meta["drift_elasticity"])
            for r in records
        ]
    )
    intervals = {level: predictor.interval_ms(x, level) for level in (0.8, 0.95)}
    return accuracy(predictor.predict_ms(x), y, intervals).to_dict()


def leave_one_occasion_out(calibrate_n: int = 20) -> dict:
    """Item 2: for each occasion, the shipped predictor calibrated (`transfer`) on every record of
    the other occasions, its intervals as they are and with the between-occasion component of
    those occasions (`LatencyPredictor.with_occasions`), checked on the held-out occasion.
    Item 3: the shipped predictor calibrated on `calibrate_n` of the held-out occasion's own
    architectures (spread by size), checked on its other ones."""
    import tempfile

    from mos_search.costs.predictors import transfer_predictor

    by_occasion = {p.stem: read_records(p) for p in sorted(RESULTS.glob("*.jsonl"))}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for held, records in by_occasion.items():
            others = {k: v for k, v in by_occasion.items() if k != held}
            pool = [r for v in others.values() for r in v]
            transfer_predictor(
                shipped_path(DEVICE), _write(pool, work / "o.jsonl"), work / "o.json"
            )
            fitted = LatencyPredictor.load(work / "o.json")
            meta = fitted.meta
            corrected = {
                k: {
                    record_key(r): r["latency_ms"]
                    * drift_factor(
                        r["reference_ms"], meta["reference_ms"], meta["drift_elasticity"]
                    )
                    for r in v
                }
                for k, v in others.items()
            }
            ratios = [
                np.log(corrected[b][key] / corrected[a][key])
                for a, b in itertools.combinations(sorted(corrected), 2)
                for key in corrected[a]
                if key in corrected[b]
            ]
            row = {"others": sorted(others), "without": _accuracy(fitted, records)}
            row["with_occasions"] = _accuracy(fitted.with_occasions(np.array(ratios)), records)
            ordered = sorted(records, key=lambda r: r["params"])
            step = len(ordered) / calibrate_n
            chosen = {int(i * step) for i in range(calibrate_n)}
            today = [r for i, r in enumerate(ordered) if i in chosen]
            rest = [r for i, r in enumerate(ordered) if i not in chosen]
            shipped = LatencyPredictor.load(shipped_path(DEVICE))
            transfer_predictor(
                shipped_path(DEVICE), _write(today, work / "t.jsonl"), work / "t.json"
            )
            row["calibration"] = {
                "n": len(today),
                "checked_on": len(rest),
                "before": _accuracy(shipped, rest),
                "after": _accuracy(LatencyPredictor.load(work / "t.json"), rest),
            }
            out[held] = row
    print("\nleave one occasion out (coverage % at 80 / 95, mean width % at 80 / 95):")
    for held, row in out.items():
        for name in ("without", "with_occasions"):
            a = row[name]
            print(
                f"  {held} {name:<15} MAPE {a['mape']:5.2f}  cover {a['coverage_80']:5.1f} / "
                f"{a['coverage_95']:5.1f}  width {a['width_80']:5.1f} / {a['width_95']:5.1f}"
            )
    print(f"calibration on {calibrate_n} of the occasion's architectures, checked on the rest:")
    for held, row in out.items():
        for name in ("before", "after"):
            a = row["calibration"][name]
            print(
                f"  {held} {name:<7} MAPE {a['mape']:6.2f}  within 10% {a['within_10']:5.1f}  "
                f"cover {a['coverage_80']:5.1f} / {a['coverage_95']:5.1f}  "
                f"width {a['width_80']:5.1f} / {a['width_95']:5.1f}"
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--make-panel", action="store_true")
    parser.add_argument("--occasion", help="profile the panel now, under this name")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.make_panel:
        make_panel()
    if args.occasion:
        occasion(args.occasion)
    if args.report:
        report()


if __name__ == "__main__":
    main()
