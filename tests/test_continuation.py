"""A supernet continued from another (training/continuation.py): lineage and cumulative figures on
the card, the learning-rate schedule going on from the earlier steps, Adam's second moments kept
in bf16 beside a pretrained folder's weights, and a pack that replaces a folder only when better."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from mos_search.cli import main

from conftest import assert_one_line_error, flip_last_byte, tiny_train_config, tree_digests


@pytest.fixture(scope="module")
def packed(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("continuation") / "tiny-neuron"
    args = ["pack-supernet", "--ckpt", str(tiny_run), "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--test-limit", "4", "--beam", "1", "--threads", "1"])
    assert result.exit_code == 0, result.output
    return out


def test_the_schedule_of_a_fresh_run_is_the_plain_one():
    from mos_search.training.continuation import ContinuedSchedule
    from mos_search.training.schedule import inverse_sqrt_lr

    schedule = ContinuedSchedule(2e-3, 100)
    for step in (1, 50, 100, 101, 5000):
        assert schedule.lr(step) == inverse_sqrt_lr(step, 2e-3, 100)


def test_a_continued_schedule_goes_on_from_the_earlier_steps():
    from mos_search.training.continuation import MOMENTS_SECOND, ContinuedSchedule
    from mos_search.training.schedule import inverse_sqrt_lr

    with_moments = ContinuedSchedule(2e-3, 100, prior_steps=1004, moments=MOMENTS_SECOND)
    assert (
        with_moments.lr(1)
        == inverse_sqrt_lr(1005, 2e-3, 100)
        == pytest.approx(2e-3 * math.sqrt(100 / 1005))
    )
    fresh = ContinuedSchedule(2e-3, 100, prior_steps=1004)  # no moments: re-warmed
    assert fresh.lr(1) == pytest.approx(inverse_sqrt_lr(1005, 2e-3, 100) / 100)
    assert fresh.lr(50) == pytest.approx(inverse_sqrt_lr(1054, 2e-3, 100) / 2)
    assert fresh.lr(100) == with_moments.lr(100) == inverse_sqrt_lr(1104, 2e-3, 100)


def test_the_pack_keeps_second_moments_in_bf16_and_the_lineage(packed, tiny_run):
    from mos_search.files import sha256_file
    from mos_search.models.checkpoint import (
        OPTIMIZER_FILE,
        load_tensors,
        read_state,
        resolve_checkpoint,
    )

    card = json.loads((packed / "card.json").read_text())
    state = json.loads((packed / "state.json").read_text())
    moments = load_file(packed / "moments.safetensors")
    step = moments.pop("__step__")
    assert {t.dtype for t in moments.values()} == {torch.bfloat16}
    assert state["moments_sha256"] == sha256_file(packed / "moments.safetensors")
    size = (packed / "moments.safetensors").stat().st_size
    assert size <= 1.01 * (packed / "model.safetensors").stat().st_size  # bf16, one moment
    source = resolve_checkpoint(tiny_run)
    full = load_tensors(source, OPTIMIZER_FILE)
    from mos_search.models.build import build_model

    model = build_model(read_state(source)["model"])
    names = [name for name, _ in model.named_parameters()]
    for index, name in enumerate(names):
        if f"state.{index}.exp_avg_sq" in full:
            exact = full[f"state.{index}.exp_avg_sq"]
            assert torch.allclose(moments[name].float(), exact, rtol=2**-8, atol=0), name
    assert step.item() == 30
    assert card["lineage"] == [
        {
            "steps": 30,
            "tokens_seen": state["tokens_seen"],
            "elapsed_seconds": state["elapsed_seconds"],
            "command": card["command"],
            "commit": card["commit"],
        }
    ]
    assert card["cumulative"]["steps"] == 30 and card["cumulative"]["segments"] == 1
    assert state["lineage"] == []  # the segments before the packed run: none


def test_init_restores_the_second_moments_and_continues_the_schedule(packed, tiny_corpus, tmp_path):
    from mos_search.training.continuation import MOMENTS_SECOND
    from mos_search.training.train import Trainer

    config = tiny_train_config(tiny_corpus.root, tmp_path / "more", init_from=str(packed))
    trainer = Trainer(config)
    assert trainer.moments == MOMENTS_SECOND
    assert trainer.schedule.prior_steps == 30
    moments = load_file(packed / "moments.safetensors")
    for name, param in trainer.model.named_parameters():
        slots = trainer.optimizer.state.get(param)
        if name in moments:
            assert torch.equal(slots["exp_avg_sq"], moments[name].float()), name
            assert not slots["exp_avg"].any() and float(slots["step"]) == 30
        else:
            assert slots is None, name
    trainer.train_step()  # Adam steps on the restored state without complaint
    assert trainer.step == 1


def test_init_from_a_run_restores_both_moments_without_a_re_warm_up(
    tiny_run, tiny_corpus, tmp_path
):
    """A run checkpoint holds Adam's full state: both moments and the step count come along,
    read by parameter position from its optimizer file, and the schedule is not re-warmed."""
    from mos_search.models.checkpoint import OPTIMIZER_FILE, load_tensors, resolve_checkpoint
    from mos_search.training.continuation import MOMENTS_FULL
    from mos_search.training.schedule import inverse_sqrt_lr
    from mos_search.training.train import Trainer

    config = tiny_train_config(tiny_corpus.root, tmp_path / "more", init_from=str(tiny_run))
    trainer = Trainer(config)
    assert trainer.moments == MOMENTS_FULL
    assert trainer.schedule.lr(1) == inverse_sqrt_lr(31, config.lr, config.warmup)
    saved = load_tensors(resolve_checkpoint(tiny_run), OPTIMIZER_FILE)
    restored = 0
    for index, param in enumerate(trainer.model.parameters()):
        if f"state.{index}.exp_avg" in saved:
            state = trainer.optimizer.state[param]
            assert torch.equal(state["exp_avg"], saved[f"state.{index}.exp_avg"])
            assert torch.equal(state["exp_avg_sq"], saved[f"state.{index}.exp_avg_sq"])
            restored += 1
    assert restored > 0


def test_continuing_twice_sums_the_lineage_on_the_card(packed, tiny_corpus, tmp_path):
    from mos_search.deploy.pretrained import pack_supernet
    from mos_search.models.checkpoint import read_state
    from mos_search.training.train import train

    config = tiny_train_config(
        tiny_corpus.root, tmp_path / "more", init_from=str(packed), max_steps=4, save_every=2
    )
    train(config, progress=False)
    state = read_state(tmp_path / "more")
    assert [s["steps"] for s in state["lineage"]] == [30] and state["moments"] == "second"
    first = json.loads((packed / "card.json").read_text())
    card = pack_supernet(
        tmp_path / "more", tmp_path / "packed-2", test_limit=4, beam=1, threads=1, echo=str
    )
    assert [s["steps"] for s in card["lineage"]] == [30, 4]
    assert card["cumulative"]["steps"] == 34
    assert card["cumulative"]["tokens_seen"] == first["tokens_seen"] + state["tokens_seen"]
    assert card["cumulative"]["wall_seconds"] == pytest.approx(
        first["wall_seconds"] + state["elapsed_seconds"], abs=0.1
    )
    from mos_search.training.train import Trainer

    again = tiny_train_config(
        tiny_corpus.root, tmp_path / "again", init_from=str(tmp_path / "packed-2")
    )
    assert Trainer(again).schedule.prior_steps == 34


def test_a_resumed_continuation_keeps_its_lineage_and_schedule(
    packed, tiny_corpus, tmp_path, capsys
):
    from mos_search.training.train import Trainer, train

    out = tmp_path / "more"
    train(tiny_train_config(tiny_corpus.root, out, init_from=str(packed), max_steps=2), False)
    assert "Adam moments carried over: second" in capsys.readouterr().out
    resumed = Trainer(tiny_train_config(tiny_corpus.root, out, max_steps=4), resume=True)
    assert resumed.schedule.prior_steps == 30 and resumed.moments == "second"
    assert [s.steps for s in resumed.lineage] == [30]
    # a resume restores this run's own Adam state: it says so, not "carried over"
    line = capsys.readouterr().out
    assert "Adam's state restored from this run's checkpoint (it started with moments: second)" in (
        line
    )


def test_only_if_better_keeps_a_folder_that_is_not_improved(packed, tiny_run, tmp_path):
    copy = tmp_path / "shipped"
    shutil.copytree(packed, copy)
    before = tree_digests(copy)
    args = ["pack-supernet", "--ckpt", str(tiny_run), "--out", str(copy), "--only-if-better"]
    result = CliRunner().invoke(main, [*args, "--test-limit", "4", "--beam", "1", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "do not improve both members" in result.output  # the same weights: not better
    assert tree_digests(copy) == before
    assert not list(tmp_path.glob(".shipped.*"))  # the staged folder is gone


def test_only_if_better_replaces_a_folder_both_members_improve_on(packed, tiny_run, tmp_path):
    copy = tmp_path / "shipped"
    shutil.copytree(packed, copy)
    card = json.loads((copy / "card.json").read_text())
    for member in card["scores"].values():  # an older card, worse on both members
        member["test_bleu"] -= 1.0
        member["valid_loss"] += 1.0
    (copy / "card.json").write_text(json.dumps(card))
    args = ["pack-supernet", "--ckpt", str(tiny_run), "--out", str(copy), "--only-if-better"]
    result = CliRunner().invoke(main, [*args, "--test-limit", "4", "--beam", "1", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    assert (
        json.loads((copy / "card.json").read_text())["scores"]
        == json.loads((packed / "card.json").read_text())["scores"]
    )


def test_changed_moments_are_refused(packed, tiny_corpus, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(packed, copy)
    moments = copy / "moments.safetensors"
    flip_last_byte(moments)
    before = tree_digests(tmp_path)
    args = ["train", "--init", str(copy), "--data", str(tiny_corpus.root)]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "r"), "--max-steps", "1"])
    assert_one_line_error(result, str(moments), "changed since they were saved")
    assert tree_digests(tmp_path) == before
