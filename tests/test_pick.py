"""Picking the architecture to export from a finished search, and the measured latency it is
judged on: `search/pick.py` (best under the budget, by rank, the error naming the closest) and
`search/verify.measured_latency` (pass medians scaled by reference and elasticity).

Run folders here are hand-made (search.json, front.json, verified.json), so every expected pick
is known in advance; one end-to-end `export --from-search --pick N` runs on the tiny supernet.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from mos_search.cli import main
from mos_search.errors import ConfigError
from mos_search.search.config import Budget, SearchConfig
from mos_search.search.pick import (
    HYPOTHESES_FILE,
    chosen_arch,
    measured_upper_ms,
    pick_decision,
    pick_from_search,
)
from mos_search.search.verify import measured_latency

DEV, OTHER = "dev-a", "dev-b"
# the budget error's message, up to the rank of the closest architecture
NONE_WITHIN = "no verified architecture was measured within the budget; the closest"


def arch(n: int) -> dict:
    """A stand-in architecture (pick never builds one): distinct per `n`."""
    return {"encoder_embed_dim": 16, "encoder_layers": n}


def front_row(n: int, loss: float = 5.0, bleu: float = 1.0) -> dict:
    return {"arch": arch(n), "loss": loss, "bleu": bleu, "costs": {DEV: 1.0, OTHER: 1.0}}


def verified_row(n: int, bleu: float, upper: float | dict, scaled: float | None = None) -> dict:
    """A verified.json row: test BLEU and the measured upper end (ms, one device or by device);
    the scaled median, when given, lies below the upper end (as measured ones do)."""
    uppers = upper if isinstance(upper, dict) else {DEV: upper}
    medians = {d: scaled if scaled is not None else u / 2 for d, u in uppers.items()}
    return {
        "arch": arch(n),
        "test_bleu": bleu,
        "measured_scaled_ms": medians,
        "measured_upper_ms": uppers,
    }


def write_run(
    root: Path,
    front: list[dict],
    verified: list[dict] | None = None,
    budgets: tuple[Budget, ...] = (),
    task: str = "mt",
    quality: str = "loss",
    devices: tuple[str, ...] = (DEV,),
) -> Path:
    """A finished search run folder: search.json, front.json and (when given) verified.json."""
    root.mkdir(parents=True, exist_ok=True)
    config = SearchConfig(task=task, quality=quality, devices=devices, budgets=budgets)
    (root / "search.json").write_text(json.dumps(config.to_dict()))
    (root / "front.json").write_text(json.dumps(front))
    if verified is not None:
        (root / "verified.json").write_text(json.dumps({"split": "test", "archs": verified}))
    return root


# ------------------------------------------------------------------ best under a latency budget


def test_best_is_the_highest_bleu_whose_measured_upper_end_meets_the_budget(tmp_path):
    """Budget 10 ms. Over it: the two best BLEUs (one over by its median too, one only by its
    upper end). Within: 10.0 exactly (the boundary counts), and two lower BLEUs. A verified row
    of an architecture not on the front is not a candidate."""
    verified = [
        verified_row(4, bleu=15.0, upper=6.0),
        verified_row(1, bleu=30.0, upper=12.0, scaled=11.0),  # over, median and upper
        verified_row(5, bleu=10.0, upper=4.0),  # the lowest BLEU
        verified_row(3, bleu=18.0, upper=10.0),  # exactly at the budget: the pick
        verified_row(2, bleu=20.0, upper=10.5, scaled=8.0),  # median within, upper end over
        verified_row(9, bleu=99.0, upper=1.0),  # not on this front
    ]
    run = write_run(
        tmp_path / "run",
        [front_row(n) for n in (1, 2, 3, 4, 5)],
        verified,
        budgets=(Budget.latency_ms(10.0, DEV),),
    )
    assert pick_from_search(run, "best") == arch(3)
    assert chosen_arch(None, str(run), "best").arch == arch(3)


def test_every_latency_budget_must_be_met(tmp_path):
    """Two devices, a budget on each: the best BLEU within one budget only is not picked."""
    verified = [
        verified_row(1, bleu=30.0, upper={DEV: 5.0, OTHER: 25.0}),  # over on dev-b
        verified_row(2, bleu=25.0, upper={DEV: 11.0, OTHER: 5.0}),  # over on dev-a
        verified_row(3, bleu=20.0, upper={DEV: 9.0, OTHER: 19.0}),  # within both
        verified_row(4, bleu=10.0, upper={DEV: 1.0, OTHER: 1.0}),  # within both, lower BLEU
    ]
    run = write_run(
        tmp_path / "run",
        [front_row(n) for n in (1, 2, 3, 4)],
        verified,
        budgets=(Budget.latency_ms(10.0, DEV), Budget.latency_ms(20.0, OTHER)),
        devices=(DEV, OTHER),
    )
    assert pick_from_search(run, "best") == arch(3)


def test_nothing_within_the_budget_is_one_error_naming_the_closest(tmp_path):
    """No verified architecture meets the budget: nothing is picked, and the one-line error names
    the closest by its front rank (not its place in verified.json) and how far it is."""
    verified = [
        verified_row(1, bleu=30.0, upper=14.0),
        verified_row(4, bleu=10.0, upper=10.5),  # the closest: rank 4 of the front
        verified_row(2, bleu=20.0, upper=12.0),
    ]
    run = write_run(
        tmp_path / "run",
        [front_row(n) for n in (1, 2, 3, 4)],
        verified,
        budgets=(Budget.latency_ms(10.0, DEV),),
    )
    with pytest.raises(ConfigError) as error:
        pick_from_search(run, "best")
    message = str(error.value)
    assert message.startswith(f"{NONE_WITHIN} (rank 4) measured 10.5 ms against 10 ms on dev-a")
    assert message.endswith("--pick 4") and "\n" not in message


def test_the_closest_is_judged_on_the_worst_budget(tmp_path):
    """With two budgets the closest is the one whose worst overrun (upper / limit) is least."""
    verified = [
        verified_row(1, bleu=30.0, upper={DEV: 9.0, OTHER: 30.0}),  # worst 1.5
        verified_row(2, bleu=20.0, upper={DEV: 12.0, OTHER: 22.0}),  # worst 1.2: the closest
        verified_row(3, bleu=10.0, upper={DEV: 13.0, OTHER: 10.0}),  # worst 1.3
    ]
    run = write_run(
        tmp_path / "run",
        [front_row(n) for n in (1, 2, 3)],
        verified,
        budgets=(Budget.latency_ms(10.0, DEV), Budget.latency_ms(20.0, OTHER)),
        devices=(DEV, OTHER),
    )
    expected = f"{NONE_WITHIN} (rank 2) measured 12.0 ms against 10 ms on dev-a, 22.0 ms against"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        pick_from_search(run, "best")


def test_a_budget_without_verification_refuses_to_guess(tmp_path):
    run = write_run(
        tmp_path / "run", [front_row(1), front_row(2)], budgets=(Budget.latency_ms(10.0, DEV),)
    )
    with pytest.raises(ConfigError, match=r"the front was not measured \(verified.json\)"):
        pick_from_search(run, "best")


def test_older_rows_are_judged_on_what_they_hold():
    """Rows written before `measured_upper_ms`: the interval's upper end; of mos-search 0.1:
    the scaled median."""
    assert measured_upper_ms(verified_row(1, 1.0, upper=7.0), DEV) == 7.0
    assert measured_upper_ms({"measured_interval_ms": {DEV: [3.0, 6.0]}}, DEV) == 6.0
    assert measured_upper_ms({"measured_scaled_ms": {DEV: 5.0}}, DEV) == 5.0


def test_rows_with_an_interval_only_are_picked_on_its_upper_end(tmp_path):
    old = [
        {"arch": arch(1), "test_bleu": 20.0, "measured_interval_ms": {DEV: [8.0, 11.0]}},
        {"arch": arch(2), "test_bleu": 10.0, "measured_interval_ms": {DEV: [8.0, 9.0]}},
    ]
    run = write_run(
        tmp_path / "run", [front_row(1), front_row(2)], old, budgets=(Budget.latency_ms(10, DEV),)
    )
    assert pick_from_search(run, "best") == arch(2)


# ------------------------------------------------------------------ best without a latency budget


def test_without_a_latency_budget_best_is_the_best_verified_test_score(tmp_path):
    verified = [
        verified_row(1, bleu=20.0, upper=100.0),
        verified_row(2, bleu=25.0, upper=500.0),  # slow, but no budget: the pick
        verified_row(3, bleu=5.0, upper=1.0),
    ]
    run = write_run(tmp_path / "run", [front_row(n) for n in (1, 2, 3)], verified)
    assert pick_from_search(run, "best") == arch(2)


def test_bert_best_is_the_lowest_test_perplexity(tmp_path):
    verified = [
        {"arch": arch(1), "test_perplexity": 40.0},
        {"arch": arch(2), "test_perplexity": 12.0},
        {"arch": arch(3), "test_perplexity": 90.0},
    ]
    front = [
        {"arch": arch(n), "perplexity": 50.0, "costs": {"params-fp32": 1.0}} for n in (1, 2, 3)
    ]
    run = write_run(
        tmp_path / "run",
        front,
        verified,
        budgets=(Budget.memory_mib(8.0),),
        task="bert",
        quality="perplexity",
    )
    assert pick_from_search(run, "best") == arch(2)


@pytest.mark.parametrize(("quality", "best"), [("loss", 2), ("bleu", 3)])
def test_unverified_without_a_budget_best_is_the_best_search_quality(tmp_path, quality, best):
    """No verified.json: the front's best quality; a loss is lowest-best, a BLEU highest-best."""
    front = [front_row(1, 4.0, 10.0), front_row(2, 3.0, 20.0), front_row(3, 5.0, 30.0)]
    run = write_run(tmp_path / "run", front, quality=quality)
    assert pick_from_search(run, "best") == arch(best)


# ------------------------------------------------------------------ ties: BLEU within noise

WORDS = [f"w{i}" for i in range(400)]


def sentences(count: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(count)]


def damaged(lines: list[str], every: int, seed: int) -> list[str]:
    """`lines` with one word replaced in every `every`-th line (seeded)."""
    import random

    rng = random.Random(seed)
    out = []
    for i, line in enumerate(lines):
        words = line.split()
        if i % every == 0:
            words[rng.randrange(len(words))] = "zzz"
        out.append(" ".join(words))
    return out


def write_hypotheses(run: Path, systems: dict[int, list[str]], references: list[str]) -> None:
    from latency.dataset import arch_key

    stored = {
        "references": references,
        "hypotheses": {arch_key(arch(n)): h for n, h in systems.items()},
    }
    (run / HYPOTHESES_FILE).write_text(json.dumps(stored))


def tie_run(tmp_path: Path) -> Path:
    """Budget 10 ms. Arch 1: the best BLEU, 9.5 ms (little slack). Arch 2: two more damaged
    words in 200 sentences (a BLEU difference well within noise), 5 ms. Arch 3: every sentence
    damaged three times over (significantly worse), 2 ms: the most slack, but no tie."""
    from mos_search.oracle.scoring import corpus_bleu

    references = sentences(200, 1)
    best = damaged(references, 3, 2)
    close = damaged(best, 100, 3)
    bad = damaged(damaged(damaged(references, 1, 4), 1, 5), 1, 6)
    systems = {1: best, 2: close, 3: bad}
    bleu = {n: corpus_bleu(h, references)[0] for n, h in systems.items()}
    assert bleu[1] > bleu[2] > bleu[3]
    verified = [
        verified_row(1, bleu=bleu[1], upper=9.5),
        verified_row(2, bleu=bleu[2], upper=5.0),
        verified_row(3, bleu=bleu[3], upper=2.0),
    ]
    budgets = (Budget.latency_ms(10.0, DEV),)
    run = write_run(tmp_path / "run", [front_row(n) for n in (1, 2, 3)], verified, budgets)
    write_hypotheses(run, systems, references)
    return run


def test_a_tie_with_the_best_bleu_goes_to_the_one_with_more_latency_slack(tmp_path):
    decision = pick_decision(tie_run(tmp_path), "best")
    assert decision.arch == arch(2)
    assert decision.rule == "best" and decision.best_quality_rank == 1
    assert "paired bootstrap" in decision.test and "p >= 0.05" in decision.test
    tied = {row["rank"]: row for row in decision.ties}
    assert set(tied) == {1, 2}  # arch 3 differs significantly
    assert tied[1]["p_value"] is None and tied[2]["p_value"] >= 0.05
    assert tied[2]["slack"] == pytest.approx(0.5) and tied[1]["slack"] == pytest.approx(0.05)


def test_best_quality_takes_the_highest_bleu_whatever_the_noise(tmp_path):
    decision = pick_decision(tie_run(tmp_path), "best-quality")
    assert decision.arch == arch(1) and decision.rule == "best-quality" and not decision.ties


def test_a_significantly_better_best_keeps_the_pick(tmp_path):
    """The faster candidates are all significantly worse: the best BLEU is picked."""
    from mos_search.search.pick import paired_bootstrap_p_values

    run = tie_run(tmp_path)
    verified = json.loads((run / "verified.json").read_text())
    verified["archs"] = [r for r in verified["archs"] if r["arch"] != arch(2)]
    (run / "verified.json").write_text(json.dumps(verified))
    decision = pick_decision(run, "best")
    assert decision.arch == arch(1) and [t["rank"] for t in decision.ties] == [1]
    refs = sentences(200, 1)
    p_bad, p_same = paired_bootstrap_p_values(
        damaged(refs, 3, 2),
        [damaged(damaged(damaged(refs, 1, 4), 1, 5), 1, 6), damaged(refs, 3, 2)],
        refs,
    )
    assert p_bad < 0.05 and p_same == 1.0  # identical output: no difference


def test_without_stored_hypotheses_best_is_the_best_bleu_and_says_why(tmp_path):
    run = tie_run(tmp_path)
    (run / HYPOTHESES_FILE).unlink()
    decision = pick_decision(run, "best")
    assert decision.arch == arch(1) and "no verified_hypotheses.json" in decision.note


# ------------------------------------------------------------------ by rank, and bad requests


def test_pick_n_is_the_reports_rank_whatever_was_verified(tmp_path):
    run = write_run(
        tmp_path / "run",
        [front_row(n) for n in (1, 2, 3)],
        [verified_row(1, bleu=30.0, upper=99.0)],  # over budget: a rank is exported anyway
        budgets=(Budget.latency_ms(10.0, DEV),),
    )
    assert [pick_from_search(run, str(n)) for n in (1, 2, 3)] == [arch(1), arch(2), arch(3)]


@pytest.mark.parametrize(
    ("pick", "message"),
    [
        ("0", r"--pick 0: the front has 3 architectures"),
        ("4", r"--pick 4: the front has 3 architectures"),
        ("first", r"--pick: expected best, best-quality or a rank, found 'first'"),
    ],
)
def test_a_bad_pick_is_refused(tmp_path, pick, message):
    run = write_run(tmp_path / "run", [front_row(n) for n in (1, 2, 3)])
    with pytest.raises(ConfigError, match=message):
        pick_from_search(run, pick)


def test_a_folder_without_a_front_and_two_sources_are_refused(tmp_path):
    with pytest.raises(
        ConfigError, match=re.escape("has no front.json: not a finished search run")
    ):
        pick_from_search(tmp_path, "1")
    with pytest.raises(ConfigError, match="give exactly one of --arch FILE and --from-search"):
        chosen_arch("arch.json", str(tmp_path), "best")
    with pytest.raises(ConfigError, match="give exactly one of --arch FILE and --from-search"):
        chosen_arch(None, None, "best")


# ------------------------------------------------------------------ the CLI


def test_export_refuses_with_one_line_when_nothing_meets_the_budget(tmp_path):
    """The pick fails before the checkpoint is read: nothing is written."""
    run = write_run(
        tmp_path / "run",
        [front_row(1), front_row(2)],
        [verified_row(1, bleu=30.0, upper=14.0), verified_row(2, bleu=20.0, upper=11.0)],
        budgets=(Budget.latency_ms(10.0, DEV),),
    )
    out = tmp_path / "model"
    args = ["export", "--ckpt", str(tmp_path / "none"), "--from-search", str(run)]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {NONE_WITHIN} (rank 2) measured 11.0 ms")
    assert result.output.count("\n") == 1 and not out.exists()


def test_export_from_search_pick_n_exports_that_rank(tiny_run, tmp_path):
    from mos_search.models.build import load_model

    space = load_model(tiny_run).space
    archs = [space.largest().to_dict(), space.smallest().to_dict()]
    front = [{"arch": a, "loss": 5.0, "costs": {"onnxruntime-cpu-quick": 1.0}} for a in archs]
    run = tmp_path / "run"
    run.mkdir()
    (run / "front.json").write_text(json.dumps(front))
    out = tmp_path / "model"
    args = ["export", "--ckpt", str(tiny_run), "--from-search", str(run), "--pick", "2"]
    options = ["--device", "onnxruntime-cpu-quick", "--test-limit", "4", "--beam", "1"]
    result = CliRunner().invoke(main, [*args, "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["arch"] == archs[1]
    assert json.loads((out / "arch.json").read_text()) == archs[1]
    assert card["pick"]["rule"] == "rank" and card["pick"]["best_quality_rank"] == 2


# ------------------------------------------------------------------ measured latency, scaled

# three passes (given out of order); the predictor's reference time 8 ms. Pass 0 ran beside a
# reference of 2 ms (a machine 4x faster), pass 1 at 8 ms, pass 2 at 32 ms (4x slower).
BY_PASS = {
    2: {"latency_ms": 44.0, "reference_ms": 32.0, "flagged": False},  # no high_ms: its median
    0: {"latency_ms": 10.0, "high_ms": 17.0, "reference_ms": 2.0},
    1: {"latency_ms": 30.0, "high_ms": 33.0, "reference_ms": 8.0, "flagged": True},
}


def test_measured_latency_scales_each_pass_by_its_reference_to_the_elasticity():
    """Elasticity 0.5: factors (8/2)**0.5 = 2, (8/8)**0.5 = 1, (8/32)**0.5 = 0.5."""
    m = measured_latency(BY_PASS, reference_ms=8.0, elasticity=0.5, confidence=0.95)
    assert m["passes_raw_ms"] == [10.0, 30.0, 44.0] and m["raw_ms"] == 30.0
    assert m["passes_ms"] == [20.0, 30.0, 22.0] and m["scaled_ms"] == 22.0
    assert m["interval_ms"] == [20.0, 30.0] and m["interval_coverage"] == 0.75
    assert m["upper_ms"] == 34.0  # pass 0's high end, 17 ms x 2 (pass 1: 33, pass 2: 44 x 0.5)
    assert m["flagged_passes"] == 1


def test_measured_latency_with_elasticity_one_is_proportional():
    m = measured_latency(BY_PASS, reference_ms=8.0, elasticity=1.0, confidence=0.95)
    assert m["passes_ms"] == [40.0, 30.0, 11.0] and m["scaled_ms"] == 30.0
    assert m["interval_ms"] == [11.0, 40.0] and m["upper_ms"] == 68.0
    assert m["raw_ms"] == 30.0 and m["flagged_passes"] == 1


@pytest.mark.parametrize(("reference_ms", "elasticity"), [(8.0, None), (None, 0.5)])
def test_measured_latency_of_a_raw_predictor_stays_raw(reference_ms, elasticity):
    """No elasticity, or no reference time (a predictor of raw times): nothing is scaled."""
    m = measured_latency(BY_PASS, reference_ms, elasticity, confidence=0.95)
    assert m["passes_ms"] == m["passes_raw_ms"] == [10.0, 30.0, 44.0]
    assert m["scaled_ms"] == 30.0 and m["interval_ms"] == [10.0, 44.0] and m["upper_ms"] == 44.0


def test_a_pass_without_a_reference_is_kept_raw():
    by_pass = {0: {"latency_ms": 5.0, "high_ms": 6.0}, 1: {**BY_PASS[0], "flagged": True}}
    m = measured_latency(by_pass, reference_ms=8.0, elasticity=0.5, confidence=0.95)
    assert m["passes_ms"] == [5.0, 20.0] and m["upper_ms"] == 34.0
    assert m["scaled_ms"] == 12.5 and m["flagged_passes"] == 1
