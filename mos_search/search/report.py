"""Search reports: Pareto plots (PNG and SVG), hypervolume against oracle calls, HTML, JSON, CSV.

Everything is read from a finished run folder (and optionally a baseline run on the same
problem); the HTML page embeds its plots as inline SVG, so it is one self-contained file.
Every plot draws the search's budgets where its x-axis is their quantity, joins points in the
order of its x-axis, and keeps its legend below the axes, where it hides no point.
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import Any

from mos_search.errors import ConfigError
from mos_search.files import read_json, read_text, split_lines, write_json_atomic, write_text_atomic
from mos_search.search.config import MEMORY_COST, PEAK_MEMORY_COST, QUALITY_SIGN, SearchConfig
from mos_search.search.pick import measured_upper_ms
from mos_search.search.problem import Evaluation

METRIC_LABELS = {
    "loss": "validation loss (nats/token, lower is better)",
    "bleu": "validation BLEU (higher is better)",
    "perplexity": "validation perplexity (lower is better)",
}


def _key(arch: dict) -> str:
    return json.dumps(arch, sort_keys=True)


def load_run(run: str | Path) -> dict[str, Any]:
    """The pieces of a run folder a report needs (verified.json is optional)."""
    run = Path(run)
    needed = ["search.json", "state.json", "front.json"]
    missing = [n for n in needed if not (run / n).is_file()]
    if missing:
        raise ConfigError(f"{run} is not a finished search run: missing {', '.join(missing)}")
    data = {n.removesuffix(".json"): read_json(run / n) for n in needed}
    verified = run / "verified.json"
    data["verified"] = read_json(verified)["archs"] if verified.is_file() else []
    evaluations = []
    for line in split_lines(read_text(run / "evaluations.jsonl")):
        try:
            evaluations.append(Evaluation.from_dict(json.loads(line)).to_dict())
        except (json.JSONDecodeError, TypeError):
            break  # a line cut short by a crash
    data["front"] = [_with_costs(point) for point in data["front"]]
    data["scored"] = [e for e in evaluations if e["quality"] is not None and _feasible(e)]
    data["config"] = SearchConfig.from_dict(data["search"])
    data["name"] = f"{data['config'].algorithm} ({run.name})"
    return data


def _with_costs(point: dict[str, Any]) -> dict[str, Any]:
    """A front record with its costs under `costs` (mos-search 0.1 used the cost's own name)."""
    for old in ("predicted_latency_ms", "memory_mib"):
        if "costs" not in point and old in point:
            point = {**point, "costs": point[old]}
            del point[old]
    return point


def _feasible(evaluation: dict) -> bool:
    return all(v <= 0 for v in evaluation["violations"])


def is_bert(run: dict[str, Any]) -> bool:
    """Whether a loaded run is a perplexity-memory (BERT) search."""
    return run["config"].task == "bert"


def _bert_rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    metric = run["config"].quality
    verified = {_key(v["arch"]): v for v in run["verified"]}
    out = []
    for rank, point in enumerate(run["front"], 1):
        v = verified.get(_key(point["arch"]), {})
        memory = v.get("memory", {})
        out.append(
            {
                "rank": rank,
                f"valid_{metric}": point[metric],
                "test_perplexity": v.get("test_perplexity"),
                "params_m": point["params"] / 1e6,
                "params_fp32_mib": point["costs"][MEMORY_COST],
                "params_fp16_mib": point["costs"][MEMORY_COST] / 2,
                "onnxruntime_peak_mib": memory.get("onnxruntime_peak_mib"),
                "arch": json.dumps(point["arch"]),
            }
        )
    return out


def rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per front architecture, with its verification when there is one."""
    if is_bert(run):
        return _bert_rows(run)
    metric, devices = run["config"].quality, run["config"].devices
    verified = {_key(v["arch"]): v for v in run["verified"]}
    out = []
    for rank, point in enumerate(run["front"], 1):
        v = verified.get(_key(point["arch"]), {})
        row: dict[str, Any] = {
            "rank": rank,
            f"valid_{metric}": point[metric],
            "test_bleu": v.get("test_bleu"),
            "params_m": point["params"] / 1e6,
        }
        for d in devices:
            row[f"predicted_ms[{d}]"] = point["costs"][d]
            row[f"measured_ms[{d}]"] = v.get("measured_scaled_ms", {}).get(d)
            row[f"error_pct[{d}]"] = v.get("latency_error_pct", {}).get(d)
        if run["config"].memory_model is not None:  # a peak-memory budget: bound and measured
            row["peak_memory_bound_mib"] = point.get("bounds", {}).get(PEAK_MEMORY_COST)
            row["measured_peak_memory_mib"] = v.get("measured_peak_memory_mib")
        row["arch"] = json.dumps(point["arch"])
        out.append(row)
    return out


def _figure_text(fig: Any, stem: Path) -> str:
    """Save `fig` as PNG and SVG beside `stem`; the SVG text for inlining."""
    fig.savefig(stem.with_suffix(".png"), dpi=130, bbox_inches="tight")
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    stem.with_suffix(".svg").write_text(buffer.getvalue())
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def _legend_below(ax: Any) -> None:
    """The legend under the axes and their x label: outside the data, so it hides no point."""
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)


COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]


def screened_points(run: dict[str, Any], cost_index: int) -> list[tuple[float, float]]:
    """(cost, quality) of every candidate an assisted search screened out, the quality being
    the surrogate's optimistic prediction (`assisted.py`); empty for other algorithms."""
    log = run["state"].get("algorithm", {}).get("log", [])
    sign = QUALITY_SIGN[run["config"].quality]
    return [
        (c["optimistic"][1 + cost_index], sign * c["optimistic"][0])
        for generation in log
        for c in generation.get("screened", [])
    ]


def _front_plot(runs: list[dict]) -> Any:
    import matplotlib.pyplot as plt

    config = runs[0]["config"]
    costs = config.costs
    fig, axes = plt.subplots(1, len(costs), figsize=(6.4 * len(costs), 4.6), squeeze=False)
    for ax, cost in zip(axes[0], costs):
        for colour, run in zip(COLOURS, runs):
            xs = [e["costs"][cost.key] for e in run["scored"]]
            ys = [e["quality"] for e in run["scored"]]
            ax.scatter(xs, ys, s=8, color=colour, alpha=0.25, label=f"{run['name']}: all scored")
            screened = screened_points(run, costs.index(cost))
            if screened:
                ax.scatter(
                    *zip(*screened),
                    s=10,
                    marker="x",
                    color=colour,
                    alpha=0.35,
                    label=f"{run['name']}: screened out (surrogate's optimistic quality)",
                )
            front = sorted(run["front"], key=lambda p: p["costs"][cost.key])
            fx = [p["costs"][cost.key] for p in front]
            fy = [p[config.quality] for p in front]
            ax.plot(fx, fy, "o-", color=colour, ms=4, label=f"{run['name']}: front")
        for budget in config.budgets:
            if budget.cost_key == cost.key:
                ax.axvline(budget.limit, color="grey", ls=":", label=f"budget {budget.describe()}")
        ax.set_xlabel(cost.label)
        ax.set_title(f"Search objectives: {config.quality} vs {cost.metric} ({cost.key})")
        ax.set_ylabel(METRIC_LABELS.get(config.quality, config.quality))
        ax.grid(alpha=0.3)
        _legend_below(ax)
    return fig


def _verified_bert_plot(runs: list[dict]) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for colour, run in zip(COLOURS, runs):
        if not run["verified"]:
            continue
        for key, style, label in (
            ("onnxruntime_peak_mib", "o-", "peak inference memory, ONNX Runtime"),
            ("params_fp32_mib", "s--", "parameters, fp32"),
            ("params_fp16_mib", "^:", "parameters, fp16"),
        ):
            # joined along x (ties by perplexity)
            points = sorted(run["verified"], key=lambda v: (v["memory"][key], v["test_perplexity"]))
            xs = [v["memory"][key] for v in points]
            ppl = [v["test_perplexity"] for v in points]
            ax.plot(xs, ppl, style, color=colour, ms=4, label=f"{run['name']}: {label}")
    for budget in runs[0]["config"].budgets:
        if budget.cost_key == MEMORY_COST:  # a limit on the fp32 parameters
            label = f"budget {budget.describe()} (parameters, fp32)"
            ax.axvline(budget.limit, color="grey", ls=":", label=label)
    length = runs[0]["verified"][0]["memory"]["sequence_length"]
    ax.set_xlabel(f"memory (MiB); peak at batch 1 x {length} tokens")
    ax.set_ylabel("test perplexity (masked LM, fixed masks)")
    ax.set_title("Verified front: perplexity vs memory")
    ax.grid(alpha=0.3)
    _legend_below(ax)
    return fig


def _verified_plot(runs: list[dict]) -> Any:
    import matplotlib.pyplot as plt

    if not runs[0]["verified"]:
        return None
    if is_bert(runs[0]):
        return _verified_bert_plot(runs)
    config = runs[0]["config"]
    fig, axes = plt.subplots(
        1, len(config.devices), figsize=(6.4 * len(config.devices), 4.6), squeeze=False
    )
    for ax, device in zip(axes[0], config.devices):
        budgets = [b for b in config.budgets if b.device == device]
        for colour, run in zip(COLOURS, runs):
            _verified_points(ax, run, device, colour, budgets)
        for budget in budgets:
            ax.axvline(budget.limit, color="grey", ls=":", label=f"budget {budget.describe()}")
        ax.set_xlabel(f"latency on {device} (ms, at the predictor's reference speed)")
        ax.set_ylabel("test BLEU (sacreBLEU)")
        ax.set_title(f"Verified front: {device}")
        ax.grid(alpha=0.3)
        _legend_below(ax)
    return fig


def _verified_points(ax: Any, run: dict, device: str, colour: str, budgets: list) -> None:
    """Measured latency (median, interval over the passes; joined from fast to slow) and
    predicted, against test BLEU; a red cross on each architecture whose measured upper end
    misses a budget."""
    points = sorted(
        run["verified"], key=lambda v: (v["measured_scaled_ms"][device], v["test_bleu"])
    )
    if not points:
        return
    bleu = [v["test_bleu"] for v in points]
    measured = [v["measured_scaled_ms"][device] for v in points]
    upper = [measured_upper_ms(v, device) for v in points]
    lower = [
        v.get("measured_interval_ms", {}).get(device, [m])[0] for v, m in zip(points, measured)
    ]
    ax.errorbar(
        measured,
        bleu,
        xerr=[[m - lo for m, lo in zip(measured, lower)], [u - m for m, u in zip(measured, upper)]],
        fmt="o-",
        lw=1,
        color=colour,
        capsize=3,
        label=f"{run['name']}: measured (interval over passes)",
    )
    ax.scatter(
        [v["predicted_latency_ms"][device] for v in points],
        bleu,
        facecolors="none",
        edgecolors=colour,
        label=f"{run['name']}: predicted",
    )
    misses = [(m, q) for m, u, q in zip(measured, upper, bleu) if any(u > b.limit for b in budgets)]
    if misses:
        ax.scatter(*zip(*misses), marker="x", s=80, color="red", label="misses the budget")


def _hypervolume_plot(runs: list[dict]) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for colour, run in zip(COLOURS, runs):
        history = run["state"]["history"]
        ax.plot(
            [h["oracle_calls"] for h in history],
            [h["hypervolume"] for h in history],
            "o-",
            color=colour,
            ms=3,
            label=run["name"],
        )
    ax.set_xlabel("oracle calls (distinct architectures scored)")
    ax.set_ylabel("hypervolume (share of the fixed box)")
    ax.set_title("Hypervolume against oracle calls (a point a generation)")
    ax.grid(alpha=0.3)
    _legend_below(ax)
    return fig


def report_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's matplotlib figures by file stem: `front`, `verified` (when the first run has
    verified architectures) and `hypervolume`; `runs` are `load_run`s, the first one reported."""
    figures = {"front": _front_plot(runs), "verified": _verified_plot(runs)}
    figures["hypervolume"] = _hypervolume_plot(runs)
    return {stem: fig for stem, fig in figures.items() if fig is not None}


def _cell(value: Any) -> str:
    if value is None:
        return "<td></td>"
    if isinstance(value, float):
        return f'<td data-v="{value}">{value:.3f}</td>'
    if isinstance(value, str) and value.startswith("{"):
        return (
            f"<td><details><summary>arch</summary><code>{html.escape(value)}</code></details></td>"
        )
    return f'<td data-v="{html.escape(str(value))}">{html.escape(str(value))}</td>'


_SORT_SCRIPT = """
document.querySelectorAll('th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0];
  const asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
  const key = r => { const v = r.cells[col].dataset.v; const n = parseFloat(v);
                     return isNaN(n) ? (v || '') : n; };
  [...body.rows].sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (asc ? 1 : -1))
    .forEach(r => body.appendChild(r));
}));
"""


def _html(run: dict, table: list[dict], figures: list[str]) -> str:
    search = run["search"]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in table[0]) if table else ""
    body = "".join("<tr>" + "".join(_cell(v) for v in row.values()) + "</tr>" for row in table)
    settings = html.escape(json.dumps(search, indent=1))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>mos-search report: {html.escape(run["name"])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1400px; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th {{ cursor: pointer; background: #eee; }} code {{ font-size: 11px; white-space: pre-wrap; }}
svg {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>Search report: {html.escape(run["name"])}</h1>
<p>{len(run["front"])} Pareto architectures, {len(run["scored"])} feasible architectures scored,
{search["generations"]} generations of {search["population"]}. Click a column to sort.</p>
{"".join(f"<div>{f}</div>" for f in figures)}
<h2>Pareto architectures</h2>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<h2>Settings</h2><pre>{settings}</pre>
<script>{_SORT_SCRIPT}</script>
</body></html>
"""


def write_report(
    run_dir: str | Path, baseline: str | Path | list[str | Path] | None = None
) -> Path:
    """Write `report/` in the run folder: plots, index.html, front.json, front.csv; `baseline`:
    other runs on the same problem (one or several), drawn beside it."""
    import matplotlib

    matplotlib.use("Agg")
    run = load_run(run_dir)
    others = [baseline] if isinstance(baseline, str | Path) else list(baseline or [])
    runs = [run, *(load_run(b) for b in others)][: len(COLOURS)]
    out = Path(run_dir) / "report"
    out.mkdir(exist_ok=True)
    figures = [_figure_text(fig, out / stem) for stem, fig in report_figures(runs).items()]
    import matplotlib.pyplot as plt

    plt.close("all")
    table = rows(run)
    write_json_atomic(out / "front.json", table)
    with (out / "front.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    page = out / "index.html"
    write_text_atomic(page, _html(run, table, figures))
    return page
