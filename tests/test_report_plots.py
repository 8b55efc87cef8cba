"""What reports show: the `score` table of both tasks (through the CLI), the search report's
figures (budgets drawn, points joined along the x-axis, legends clear of the data, titles that
say what the axes count) and the checkpoint a model card names."""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from mos_search.cli import main
from mos_search.deploy.card import card_checkpoint
from mos_search.models.bert import bert_parameter_bytes, count_bert_parameters
from mos_search.models.transformer import count_parameters
from mos_search.search.config import MEMORY_COST, Budget, SearchConfig
from mos_search.search.problem import ArchEvaluator
from mos_search.search.report import load_run, report_figures, write_report
from mos_search.search.run import open_run, run_search
from mos_search.space import load_space

from conftest import TINY_SPACE, tiny_train_config

TINY_BERT = str(Path(__file__).with_name("tiny-bert.toml"))
BERT_VOCAB = 48
WORDS = ["the", "dog", "cat", "house", "sun", "sea", "red", "green", "big", "sees", "and", "one"]


# ------------------------------------------------------------------ the score table


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory):
    """A tiny masked-LM supernet trained for a few steps on a made-up text corpus."""
    import random

    from mos_search.data.text import text_from_file
    from mos_search.training.train import train

    root = tmp_path_factory.mktemp("bert")
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(400)]
    (root / "all.txt").write_text("".join(f"{line}.\n" for line in lines))
    corpus = text_from_file(root / "corpus", root / "all.txt", vocab_size=BERT_VOCAB)
    train(tiny_train_config(corpus.root, root / "run", space=TINY_BERT, max_steps=4), False)
    return root / "run"


def score_table(ckpt: Path, *options: str) -> tuple[list[list[str]], list[str]]:
    """`mos-search score` on the largest and smallest archs: (header + rows split into
    columns, the lines after them)."""
    args = ["score", "--ckpt", str(ckpt), "--preset-arch", "largest", "--preset-arch", "smallest"]
    result = CliRunner().invoke(main, [*args, "--limit", "4", *options])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    return [line.split() for line in lines[:3]], lines[3:]


@pytest.mark.parametrize(
    "options, columns",
    [((), ["loss", "perplexity"]), (("--metric", "perplexity"), ["perplexity"])],
    ids=["default", "perplexity"],
)
def test_bert_score_table_has_one_column_a_metric(bert_run, options, columns):
    table, footer = score_table(bert_run, *options)
    assert table[0] == ["arch", "params", *columns]
    assert [len(row) for row in table[1:]] == [len(columns) + 2] * 2
    assert ("loss = NLL per masked token" in footer[0]) == ("loss" in columns), footer
    assert "perplexity = exp(NLL per masked token" in footer[0]


@pytest.mark.parametrize(
    "options, columns",
    [(("--beam", "1"), ["loss", "bleu"]), (("--metric", "bleu", "--beam", "1"), ["bleu"])],
    ids=["default", "bleu"],
)
def test_translation_score_table_explains_only_what_it_shows(tiny_run, options, columns):
    table, footer = score_table(tiny_run, *options)
    assert table[0] == ["arch", "params", *columns]
    assert [len(row) for row in table[1:]] == [len(columns) + 2] * 2
    assert ("loss = NLL per target token" in footer[0]) == ("loss" in columns), footer
    assert "perplexity" not in footer[0] and footer[1].startswith("sacreBLEU signature")


# ------------------------------------------------------------------ the search report


def synthetic_search(out: Path, config: SearchConfig, space_file: str, cost_key: str, cost, params):
    """A finished search of `config` whose quality falls with the cost (plus a fixed wobble per
    arch); then a budget at the front's median cost is written into its settings. Returns the
    front and the budget's limit."""
    space = load_space(space_file)
    out, state = open_run(out, config, resume=False)
    evaluator = ArchEvaluator(
        space,
        quality=lambda a: 30 - math.log(cost(a)) + zlib.crc32(a.to_json().encode()) % 7 / 10,
        metric=config.quality,
        costs={cost_key: cost},
        params=params,
        log_path=out / "evaluations.jsonl",
    )
    run_search(config, evaluator, out, state)
    front = json.loads((out / "front.json").read_text())
    limit = sorted(p["costs"][cost_key] for p in front)[len(front) // 2]
    budget = Budget.latency_ms(limit, cost_key) if config.task == "mt" else Budget.memory_mib(limit)
    saved = replace(config, budgets=(budget,))  # the plots draw it, met or not
    (out / "search.json").write_text(json.dumps(saved.to_dict()))
    return front, limit


def translation_run(tmp_path: Path) -> tuple[Path, float]:
    """A synthetic latency search of the tiny space, verified as if measured: listed slowest
    first (not in the x-axis' order), measured 10% over the predicted latency."""
    space = load_space(TINY_SPACE)
    params = lambda a: count_parameters(a, 64, space.qkv_dim)  # noqa: E731
    config = SearchConfig(devices=("dev",), generations=2, population=8, seed=3)
    out = tmp_path / "mt-search"
    front, limit = synthetic_search(
        out, config, TINY_SPACE, "dev", lambda a: 2 + params(a) / 1e4, params
    )
    verified = []
    for rank, point in enumerate(sorted(front, key=lambda p: -p["costs"]["dev"])):
        measured = 1.1 * point["costs"]["dev"]
        verified.append(
            {
                "arch": point["arch"],
                "test_bleu": 20.0 + (rank % 3),
                "predicted_latency_ms": {"dev": point["costs"]["dev"]},
                "measured_scaled_ms": {"dev": measured},
                "measured_interval_ms": {"dev": [0.95 * measured, 1.05 * measured]},
            }
        )
    (out / "verified.json").write_text(json.dumps({"archs": verified}))
    return out, limit


def bert_run_folder(tmp_path: Path) -> tuple[Path, float]:
    """A synthetic perplexity-memory search of the tiny BERT space, verified as if measured,
    with a peak memory not in the order of the parameters."""
    mib = lambda a: bert_parameter_bytes(a, BERT_VOCAB) / 2**20  # noqa: E731
    config = SearchConfig(task="bert", quality="perplexity", generations=2, population=8, seed=1)
    out = tmp_path / "bert-search"
    params = lambda a: count_bert_parameters(a, BERT_VOCAB)  # noqa: E731
    front, limit = synthetic_search(out, config, TINY_BERT, MEMORY_COST, mib, params)
    verified = []
    for rank, point in enumerate(front):
        fp32 = point["costs"][MEMORY_COST]
        memory = {
            "params_fp32_mib": fp32,
            "params_fp16_mib": fp32 / 2,
            "onnxruntime_peak_mib": 8 + 2 * fp32 + (3 if rank % 2 else 0),
            "sequence_length": 128,
        }
        row = {"arch": point["arch"], "test_perplexity": point["perplexity"], "memory": memory}
        verified.append(row)
    (out / "verified.json").write_text(json.dumps({"archs": verified}))
    return out, limit


def drawn_lines(ax):
    """The lines a plot joins points with (not markers alone, not error-bar caps)."""
    return [line for line in ax.lines if line.get_linestyle() not in ("None", "none", "", " ")]


def assert_legend_clear_of_the_data(fig) -> None:
    """Every axes' legend lies outside the axes: it can hide no point."""
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        legend = ax.get_legend()
        assert legend is not None
        box = legend.get_window_extent(renderer)
        assert not box.overlaps(ax.get_window_extent(renderer)), ax.get_title()


@pytest.mark.parametrize("task", ["translation", "bert"])
def test_report_figures_draw_the_budget_in_order_and_in_the_clear(tmp_path, task):
    import matplotlib

    matplotlib.use("Agg")
    out, limit = translation_run(tmp_path) if task == "translation" else bert_run_folder(tmp_path)
    figures = report_figures([load_run(out)])
    assert set(figures) == {"front", "verified", "hypervolume"}
    for stem in ("front", "verified"):
        ax = figures[stem].axes[0]
        budgets = [line for line in ax.lines if line.get_label().startswith("budget")]
        assert [list(line.get_xdata()) for line in budgets] == [[limit, limit]], stem
        joined = [line for line in drawn_lines(ax) if line not in budgets]
        assert joined, stem
        for line in joined:  # from left to right: no line runs back along the x-axis
            xs = [float(x) for x in line.get_xdata()]
            assert xs == sorted(xs), (stem, line.get_label(), xs)
    for fig in figures.values():
        fig.canvas.draw()
        assert_legend_clear_of_the_data(fig)
    hypervolume = figures["hypervolume"].axes[0]
    assert "oracle calls" in hypervolume.get_title() and "oracle calls" in hypervolume.get_xlabel()
    assert "per generation" not in hypervolume.get_title()
    page = write_report(out)
    assert {"front.png", "verified.png", "hypervolume.png"} <= {
        p.name for p in page.parent.iterdir()
    }


# ------------------------------------------------------------------ the model card


def test_card_names_the_checkpoint_relative_to_the_model(tmp_path):
    ckpt = tmp_path / "runs" / "neuron" / "checkpoints" / "step_0000400"
    assert card_checkpoint(ckpt, tmp_path / "models" / "best") == (
        "../../runs/neuron/checkpoints/step_0000400"
    )
    assert card_checkpoint(ckpt, tmp_path / "runs" / "neuron" / "model") == (
        "../checkpoints/step_0000400"
    )
    # nothing shared below the root: the run's name and the checkpoint's, no machine's folders
    elsewhere = Path("/") / "elsewhere-not-shared" / "model"
    assert card_checkpoint(ckpt, elsewhere) == "neuron/checkpoints/step_0000400"
    assert card_checkpoint(tmp_path / "standalone", elsewhere) == "standalone"
