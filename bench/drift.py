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
the shared factor; written: `bench/results/drift/summary.json`.

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
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {RESULTS / 'summary.json'}")


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
