"""The budget guarantee end to end: budgets -> search -> export -> fresh measurements.

On a finished demo run (its supernet, corpus, profile dataset and predictor), for budgets spread
from the 10th to the 90th percentile of the profiled architectures' latencies: a small NSGA-II
search constraining the predictor's upper bound (`--latency-confidence`), verification of the
front in separated passes, `export --pick best` (only architectures measured within budget; ties
in test BLEU go to the most latency slack; `--pick best-quality` for the highest BLEU), and then
`--fresh-passes` new measuring passes of the exported model, each with the interleaved
reference and scaled to the predictor's reference speed as verification does. Reports, per
budget and overall: whether the exported model meets its budget in every fresh pass, and the
slack it leaves (budget - measured median) / budget.

A budget only binds when the model the same search picks without any budget is slower than it:
above that, the exported model is the fastest-scoring one whatever the budget, and its slack
measures the supernet's quality landscape, not the guarantee. The script runs that unbudgeted
search once (budget: 10x the slowest profiled latency) and reports the slack over the binding
budgets beside the slack over all. Run it alone: timings on 2 cores.

    python bench/guarantee.py --demo runs/demo --budgets 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

# keep this folder from shadowing the `latency` package (bench/latency.py)
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from devices import load_profile  # noqa: E402
from latency.dataset import drift_corrected_ms, drift_factor, read_records  # noqa: E402
from latency.predictor import LatencyPredictor  # noqa: E402
from latency.protocol import measure  # noqa: E402
from mos_search.costs.profiling import exported_runs, folder_bundle  # noqa: E402
from mos_search.deploy.package import export_model  # noqa: E402
from mos_search.errors import ConfigError  # noqa: E402
from mos_search.models.build import load_model  # noqa: E402
from mos_search.models.onnx import GraphShapes  # noqa: E402
from mos_search.search.config import (  # noqa: E402
    Budget,
    OracleSettings,
    SearchConfig,
    VerifySettings,
)
from mos_search.search.objectives import search_task  # noqa: E402
from mos_search.search.pick import PICKS, measured_upper_ms, pick_decision  # noqa: E402

DEVICE = "onnxruntime-cpu-quick"


def fresh_passes(model_dir: Path, loaded, arch, passes: int, predictor) -> list[float]:
    """Pass medians of the exported model (ms), each scaled with its own reference."""
    shapes = GraphShapes.of(loaded.sub_network(arch))
    past = list(zip(shapes.self_heads, shapes.self_head_dims))
    profile = load_profile(DEVICE)
    bundle = folder_bundle(model_dir, past, shapes.vocab_size)
    with exported_runs(profile, [bundle], loaded.space, shapes.vocab_size) as (runs, reference):
        results = [measure(*runs[0], profile, reference) for _ in range(passes)]
    typical, power = predictor.meta["reference_ms"], predictor.meta["drift_elasticity"]
    return [
        m.seconds * 1000 * drift_factor(m.reference_seconds * 1000, typical, power) for m in results
    ]


def chosen_budgets(demo: Path, work: Path, count: int, predictor) -> tuple[list, list, float]:
    """Quantiles, budgets and the unbudgeted run's budget: from the profiled records (not the
    verification passes appended to the same dataset), saved in `work` the first time so a
    rerun with another `--pick` meets the same searches."""
    saved = work / "budgets.json"
    if saved.exists():
        data = json.loads(saved.read_text())
        return data["quantiles"], data["budgets"], data["widest_ms"]
    records = read_records(demo / "profile" / DEVICE / "latency.jsonl")
    profiled = [r for r in records if r.get("source") != "verification"]
    corrected = drift_corrected_ms(
        profiled, predictor.meta["drift_elasticity"], predictor.meta["reference_ms"]
    )
    quantiles = [float(q) for q in np.linspace(0.1, 0.9, count)]
    budgets = [round(float(np.quantile(corrected, q)), 2) for q in quantiles]
    data = {"quantiles": quantiles, "budgets": budgets, "widest_ms": 10 * float(max(corrected))}
    work.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(data, indent=1))
    return quantiles, budgets, data["widest_ms"]


def one_budget(k: int, budget_ms: float, args, loaded, predictor) -> dict:
    """Search, verify, pick, export and re-measure for one budget."""
    demo, work = Path(args.demo), Path(args.work)
    predictor_path = demo / "profile" / DEVICE / "predictor.json"
    config = SearchConfig(
        generations=args.generations,
        population=args.population,
        devices=(DEVICE,),
        predictors=(str(predictor_path),),
        budgets=(Budget.latency_ms(budget_ms, DEVICE),),
        oracle=OracleSettings(str(demo / "supernet"), str(demo / "data"), args.limit, 1, 2),
        latency_confidence=args.confidence,
    )
    run = work / f"budget{k}"
    quiet: list[str] = []
    verify = VerifySettings(args.test_limit, 1, args.verify_max, args.passes)
    search_task(config, run, (run / "search.json").exists(), verify, False, quiet.append)
    row = {"budget_ms": budget_ms}
    try:
        decision = pick_decision(run, args.pick)
    except ConfigError as exc:
        return {**row, "exported": False, "message": str(exc)}
    arch_dict = decision.arch
    # one export per budget and pick rule; the searches are shared by the rules
    model = work / (f"model{k}" if args.pick == "best" else f"model{k}-{args.pick}")
    if not (model / "card.json").exists():
        export_model(
            str(demo / "supernet"),
            arch_dict,
            model,
            str(demo / "data"),
            (DEVICE,),
            args.test_limit,
            1,
            echo=quiet.append,
        )
    verified = json.loads((run / "verified.json").read_text())["archs"]
    picked = next(v for v in verified if v["arch"] == arch_dict)
    arch = loaded.space.arch_from_dict(arch_dict)
    fresh = fresh_passes(model, loaded, arch, args.fresh_passes, predictor)
    median = statistics.median(fresh)
    return {
        **row,
        "exported": True,
        "params": json.loads((model / "card.json").read_text())["params"],
        "predicted_ms": picked["predicted_latency_ms"][DEVICE],
        "verified_ms": picked["measured_scaled_ms"][DEVICE],
        "verified_upper_ms": measured_upper_ms(picked, DEVICE),
        "fresh_passes_ms": fresh,
        "fresh_median_ms": median,
        "meets_every_pass": max(fresh) <= budget_ms,
        "meets_median": median <= budget_ms,
        "slack": (budget_ms - median) / budget_ms,
        "pick": decision.to_dict(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", default="runs/demo")
    parser.add_argument("--pick", choices=PICKS, default="best", help="see `export --help`")
    parser.add_argument("--work", default="bench/work/guarantee")
    parser.add_argument("--budgets", type=int, default=10)
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--limit", type=int, default=50, help="validation sentences scored")
    parser.add_argument("--test-limit", type=int, default=20)
    parser.add_argument("--verify-max", type=int, default=4)
    parser.add_argument("--passes", type=int, default=3, help="verification passes")
    parser.add_argument("--fresh-passes", type=int, default=3)
    parser.add_argument("--out", default="bench/results/guarantee.json")
    args = parser.parse_args()
    demo = Path(args.demo)
    predictor = LatencyPredictor.load(demo / "profile" / DEVICE / "predictor.json")
    quantiles, budgets, widest_ms = chosen_budgets(demo, Path(args.work), args.budgets, predictor)
    loaded = load_model(demo / "supernet")
    unbudgeted = one_budget(len(budgets), widest_ms, args, loaded, predictor)
    best_ms = unbudgeted["fresh_median_ms"]
    print(
        f"without a budget the search picks a model of {best_ms:.1f} ms (fresh median, "
        f"{unbudgeted['params'] / 1e6:.2f} M params): budgets below it bind"
    )
    rows = []
    print(f"{'q':>5}{'budget':>8}{'predicted':>10}{'verified':>9}{'upper':>8}{'fresh':>8}"
          f"{'max':>8}{'meets':>7}{'slack':>7}{'binds':>7}")  # fmt: skip
    for k, (q, budget_ms) in enumerate(zip(quantiles, budgets)):
        row = {"quantile": float(q), **one_budget(k, budget_ms, args, loaded, predictor)}
        row["binding"] = budget_ms < best_ms
        rows.append(row)
        if not row["exported"]:
            print(f"{q:>5.2f}{budget_ms:>8.1f}  nothing exported: {row['message'][:90]}")
            continue
        print(
            f"{q:>5.2f}{budget_ms:>8.1f}{row['predicted_ms']:>10.1f}{row['verified_ms']:>9.1f}"
            f"{row['verified_upper_ms']:>8.1f}{row['fresh_median_ms']:>8.1f}"
            f"{max(row['fresh_passes_ms']):>8.1f}{'yes' if row['meets_every_pass'] else 'NO':>7}"
            f"{row['slack'] * 100:>6.1f}%{'yes' if row['binding'] else 'no':>7}",
            flush=True,
        )
    exported = [r for r in rows if r["exported"]]
    binding = [r["slack"] for r in exported if r["binding"]]
    summary = {
        "budgets": len(rows),
        "exported": len(exported),
        "meets_every_pass": sum(r["meets_every_pass"] for r in exported),
        "meets_median": sum(r["meets_median"] for r in exported),
        "median_slack": statistics.median(r["slack"] for r in exported) if exported else None,
        "binding": len(binding),
        "median_slack_binding": statistics.median(binding) if binding else None,
        "unbudgeted": unbudgeted,
    }
    print(
        f"{summary['exported']}/{summary['budgets']} budgets exported a model; "
        f"{summary['meets_every_pass']}/{summary['exported']} met the budget in every fresh pass "
        f"({summary['meets_median']} by the median); median slack "
        + (f"{summary['median_slack'] * 100:.1f}%" if exported else "-")
        + f"; over the {len(binding)} binding budgets "
        + (f"{summary['median_slack_binding'] * 100:.1f}%" if binding else "-")
    )
    Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows, **summary}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
