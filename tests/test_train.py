"""Training: resume equals uninterrupted, checkpoints, standalone runs, learning happens."""

from __future__ import annotations

import json

import pytest
import torch

from mos_search.errors import CheckpointError, ConfigError
from mos_search.models.checkpoint import load_tensors, read_state, resolve_checkpoint
from mos_search.space import load_space
from mos_search.training.config import TrainConfig
from mos_search.training.schedule import ArchSampler, inverse_sqrt_lr
from mos_search.training.train import train

from conftest import TINY_SPACE, tiny_train_config


def config(corpus, out, **overrides) -> TrainConfig:
    base = dict(mode="layer", max_tokens=256, max_steps=8, warmup=3, save_every=3, log_every=2)
    return tiny_train_config(corpus.root, out, **{**base, **overrides})


def test_stop_request_mid_run_then_resume_equals_uninterrupted(tiny_corpus, tmp_path):
    """Ctrl-C's path: stop after the step in progress, save it, resume; epochs are crossed."""
    from mos_search.training.train import Trainer

    cfg = dict(max_tokens=1024, max_steps=9)  # about 4 batches per epoch: two epoch boundaries
    whole = train(config(tiny_corpus, tmp_path / "whole", **cfg), progress=False)
    trainer = Trainer(config(tiny_corpus, tmp_path / "split", **cfg))
    real_step = trainer.train_step

    def step_then_interrupt():
        out = real_step()
        if trainer.step == 5:
            trainer.request_stop()  # what the first Ctrl-C does, mid-step
        return out

    trainer.train_step = step_then_interrupt
    stopped = trainer.run(progress=False)
    assert stopped.interrupted and stopped.step == 5
    assert read_state(tmp_path / "split")["epoch"] >= 1
    second = train(config(tiny_corpus, tmp_path / "split", **cfg), resume=True, progress=False)
    a, b = load_tensors(whole.checkpoint), load_tensors(second.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_keeps_the_saved_config(tiny_corpus, tmp_path):
    from mos_search.training.config import resumed_config

    train(config(tiny_corpus, tmp_path / "run", max_steps=2, lr=2e-3), progress=False)
    resumed = resumed_config(tmp_path / "run", max_steps=4)
    assert (resumed.max_steps, resumed.lr, resumed.mode) == (4, 2e-3, "layer")
    with pytest.raises(ConfigError, match="mode cannot change"):
        resumed_config(tmp_path / "run", mode="neuron")


def test_resume_equals_uninterrupted(tiny_corpus, tmp_path):
    whole = train(config(tiny_corpus, tmp_path / "whole"), progress=False)
    first = train(config(tiny_corpus, tmp_path / "split", max_steps=5), progress=False)
    assert first.step == 5
    second = train(config(tiny_corpus, tmp_path / "split"), resume=True, progress=False)
    assert whole.step == second.step == 8
    a, b = load_tensors(whole.checkpoint), load_tensors(second.checkpoint)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # dropout RNG, data order, optimizer restored


def test_checkpoint_layout_and_latest(tiny_corpus, tmp_path):
    result = train(config(tiny_corpus, tmp_path / "run", max_steps=7, keep=2), progress=False)
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*"))
    assert ckpts == ["step_0000006", "step_0000007"]  # the newest two kept
    assert resolve_checkpoint(tmp_path / "run") == result.checkpoint
    state = read_state(tmp_path / "run")
    assert state["step"] == 7 and state["model"]["kind"] == "supernet"
    assert state["train_config"]["mode"] == "layer"
    assert not list((tmp_path / "run" / "checkpoints").glob(".*tmp"))
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2, 4, 6, 7]


def test_existing_run_needs_resume(tiny_corpus, tmp_path):
    train(config(tiny_corpus, tmp_path / "run", max_steps=1), progress=False)
    with pytest.raises(CheckpointError, match="already holds a run; pass --resume"):
        train(config(tiny_corpus, tmp_path / "run", max_steps=2), progress=False)


def test_resume_without_run_is_clear(tiny_corpus, tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        train(config(tiny_corpus, tmp_path / "none"), resume=True, progress=False)


def test_standalone_training(tiny_corpus, tmp_path):
    arch = load_space(TINY_SPACE).smallest()
    result = train(
        config(tiny_corpus, tmp_path / "alone", arch=arch.to_dict(), max_steps=3), progress=False
    )
    state = read_state(result.checkpoint)
    assert state["model"]["kind"] == "standalone" and state["model"]["arch"] == arch.to_dict()
    n = sum(t.numel() for t in load_tensors(result.checkpoint).values())
    from mos_search.models.transformer import count_parameters

    assert n == count_parameters(arch, tiny_corpus.vocab_size, 16)


def test_training_reduces_loss(tiny_run):
    records = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0] - 0.5
    final = records[-1]
    assert final["final"] and final["valid_nll_largest"] < 3.5


def test_sandwich_sampler_is_a_function_of_step():
    space = load_space(TINY_SPACE)
    sampler = ArchSampler(space, "sandwich", 2, seed=4)
    archs = sampler.archs(10)
    assert archs[:2] == [space.largest(), space.smallest()] and len(archs) == 4
    assert archs == ArchSampler(space, "sandwich", 2, seed=4).archs(10)
    assert len(ArchSampler(space, "random", 1, seed=4).archs(3)) == 1


@pytest.mark.parametrize("sampling", ["sandwich", "random"])
def test_sampled_archs_change_with_the_step_and_the_seed(sampling):
    """The random sub-networks of 20 steps are many different ones (a sampler that ignored the
    step would train the same few all run long); a step's archs are the same however often,
    in whatever order and by whichever sampler (every rank, a resumed run) they are asked."""
    space = load_space(TINY_SPACE)
    sampler = ArchSampler(space, sampling, 2, seed=4)
    fixed = 2 if sampling == "sandwich" else 0  # largest and smallest lead every step
    steps = {step: sampler.archs(step) for step in range(1, 21)}
    sampled = [arch for archs in steps.values() for arch in archs[fixed:]]
    assert all(
        archs[:fixed] == [space.largest(), space.smallest()][:fixed] for archs in steps.values()
    )
    assert len(sampled) == 40 and all(space.contains(arch) for arch in sampled)
    assert len(set(sampled)) >= 30  # 17,408 archs in the tiny space: few repeats
    assert len({tuple(archs) for archs in steps.values()}) == 20  # every step another pair
    again = ArchSampler(space, sampling, 2, seed=4)
    assert {step: again.archs(step) for step in reversed(range(1, 21))} == steps
    assert sampler.archs(7) == steps[7]
    other_seed = ArchSampler(space, sampling, 2, seed=5)
    assert [other_seed.archs(step) for step in steps] != list(steps.values())


def test_lr_schedule():
    assert inverse_sqrt_lr(1, 1.0, 4) == pytest.approx(0.25)
    assert inverse_sqrt_lr(4, 1.0, 4) == pytest.approx(1.0)
    assert inverse_sqrt_lr(16, 1.0, 4) == pytest.approx(0.5)


def test_bad_config_values(tiny_corpus, tmp_path):
    with pytest.raises(ConfigError, match="sampling: expected one of sandwich, random"):
        config(tiny_corpus, tmp_path, sampling="greedy")
    with pytest.raises(ConfigError, match=r"max_tokens \(64\) must be at least max_len"):
        config(tiny_corpus, tmp_path, max_tokens=64)
    with pytest.raises(ConfigError, match="keep: expected a positive integer"):
        config(tiny_corpus, tmp_path, keep=0)
    with pytest.raises(ConfigError, match="lr: expected a positive number"):
        config(tiny_corpus, tmp_path, lr=0.0)


def test_unknown_or_missing_training_options_are_named():
    with pytest.raises(ConfigError, match=r"training options: unknown key\(s\): lr_max; known: d"):
        TrainConfig.from_dict({"data": "d", "out": "o", "lr_max": 1.0})
    with pytest.raises(ConfigError, match=r"training options: missing key\(s\): out"):
        TrainConfig.from_dict({"data": "d"})


def test_graceful_stop_first_request_then_hard_stop():
    import signal

    from mos_search.interrupt import GracefulStop

    before = signal.getsignal(signal.SIGINT)
    with GracefulStop() as stop:
        assert signal.getsignal(signal.SIGINT) is not before and not stop.requested
        signal.raise_signal(signal.SIGINT)  # the first Ctrl-C only asks
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
