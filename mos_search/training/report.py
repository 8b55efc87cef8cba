"""Training reports: the loss and the router diagnostics of a run over its steps (issue 20).

`mos-search report RUN` on a training run (a folder with `metrics.jsonl`) writes `RUN/report/`:
`training.png` and `.svg` (four panels: training loss; routing entropy per routed layer; the
relative distance between expert banks per layer; the routers' share of the gradient norm)
and `training.json` (the series drawn). The diagnostics are those of `training.diagnostics`;
a weight-sharing run has none, and its panels say so.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from mos_search.errors import ConfigError
from mos_search.files import read_text, split_lines, write_json_atomic, write_text_atomic

PANELS = (
    ("loss", "training loss (nats/token)"),
    ("router_entropy", "routing entropy / log(m)  (1 = uniform)"),
    ("bank_distance", "expert bank distance  ||Wi - Wj|| / ||W||"),
    ("router_grad_share", "routers' share of the gradient norm"),
)


def training_series(run_dir: str | Path) -> dict[str, Any]:
    """The logged steps' loss and diagnostics: {"step": [...], "loss": [...],
    "router_entropy": {layer: [...]}, "bank_distance": {layer: [...]}, "router_grad_share":
    [...]} (lists aligned with "step"; None where a line lacks the value)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise ConfigError(f"{run_dir} holds no metrics.jsonl: not a training run")
    lines = [json.loads(line) for line in split_lines(read_text(path)) if line.strip()]
    # a run killed and resumed logs the steps since its last checkpoint again: keep the last
    by_step = {r["step"]: r for r in lines if "loss" in r}
    logged = [by_step[step] for step in sorted(by_step)]
    series: dict[str, Any] = {
        "step": [r["step"] for r in logged],
        "loss": [r["loss"] for r in logged],
        "router_grad_share": [r.get("router_grad_share") for r in logged],
    }
    for key in ("router_entropy", "bank_distance"):
        layers = sorted({name for r in logged for name in r.get(key, {})})
        series[key] = {n: [r.get(key, {}).get(n) for r in logged] for n in layers}
    return series


STACKS = {"encoder_layers": "enc", "decoder_layers": "dec", "layers": "L"}


def _layer_label(name: str) -> str:
    """`encoder_layers.0.ffn.fc1` -> `enc0 fc1`; `decoder_layers.1.cross_attn.q_proj` ->
    `dec1 cross_attn.q_proj`; BERT's `layers.2.block.ffn.fc2` -> `L2 fc2`."""
    parts = name.split(".")
    if len(parts) < 3 or parts[0] not in STACKS:
        return name
    rest = [p for p in parts[2:] if p not in ("block", "ffn")]
    return f"{STACKS[parts[0]]}{parts[1]} {'.'.join(rest)}"


def training_figure(series: dict[str, Any], title: str) -> Any:
    """The four panels of a run (see the module docstring), as a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    steps = series["step"]
    for ax, (key, label) in zip(axes.flat, PANELS):
        values = series[key]
        if isinstance(values, dict):
            colours = plt.cm.tab20.colors  # 20 distinct; spaces with more routed layers repeat
            for index, (name, ys) in enumerate(values.items()):
                colour = colours[index % len(colours)]
                ax.plot(steps, ys, linewidth=1, color=colour, label=_layer_label(name))
            if values:
                ax.legend(fontsize=6, ncol=2, loc="best")
        elif any(v is not None for v in values):
            ax.plot(steps, values, linewidth=1)
        if not values or (not isinstance(values, dict) and all(v is None for v in values)):
            text = "no routers (weight sharing or one architecture)"
            ax.text(0.5, 0.5, text, ha="center", transform=ax.transAxes)
        ax.set_xlabel("step")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def write_training_report(run_dir: str | Path) -> Path:
    """Write `RUN/report/training.{png,svg,json}`; the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    series = training_series(run_dir)
    if not series["step"]:
        raise ConfigError(f"{run_dir}/metrics.jsonl has no logged step yet")
    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    fig = training_figure(series, f"{run_dir.name}: {len(series['step'])} logged steps")
    png = out / "training.png"
    fig.savefig(png, dpi=120, bbox_inches="tight")
    svg = io.StringIO()
    fig.savefig(svg, format="svg", bbox_inches="tight")
    write_text_atomic(out / "training.svg", svg.getvalue())
    plt.close(fig)
    write_json_atomic(out / "training.json", series)
    return png
