"""Data-parallel training: 2 CPU ranks (gloo) equal one process on the same global batch;
bf16 autocast on a GPU runs and learns (its float32 CPU half runs here)."""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from mos_search.training.config import TrainConfig

from conftest import tiny_train_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(
    rank: int, world: int, port: int, config: TrainConfig, resume: bool, weights: str
) -> None:
    """One rank, as torchrun would start it."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    from mos_search.training.train import Trainer

    trainer = Trainer(config, resume=resume)
    trainer.run(progress=False)
    state = {k: v.detach().contiguous() for k, v in trainer.model.state_dict().items()}
    save_file(state, str(Path(weights) / f"rank{rank}.safetensors"))


def options(
    corpus, out: Path, steps: int, mode: str = "shared", sampling: str = "sandwich"
) -> TrainConfig:
    return tiny_train_config(
        corpus.root,
        out,
        sampling=sampling,
        random_archs=1,
        mode=mode,
        max_steps=steps,
        warmup=2,
        dropout=0.0,
        save_every=2,
        log_every=1,
        device="cpu",
    )


def run_ranks(world: int, config: TrainConfig, weights: Path, resume: bool = False) -> None:
    weights.mkdir(parents=True, exist_ok=True)
    mp.spawn(rank_main, (world, free_port(), config, resume, str(weights)), nprocs=world, join=True)


def single_process(config: TrainConfig, resume: bool = False) -> dict[str, torch.Tensor]:
    from mos_search.training.train import Trainer

    trainer = Trainer(config, resume=resume)
    trainer.run(progress=False)
    return {k: v.detach() for k, v in trainer.model.state_dict().items()}


def assert_close(a: dict, b: dict, tolerance: float) -> None:
    """Equal to tolerance, except attention key biases: softmax ignores them, so their true
    gradient is zero and Adam turns the rounding noise left in its place into full-size steps."""
    assert a.keys() == b.keys()
    for name in a:
        if name.endswith("k_proj.bias") and tolerance > 0:
            continue
        torch.testing.assert_close(a[name], b[name], rtol=tolerance, atol=tolerance, msg=name)


def test_two_gloo_ranks_match_one_process(tiny_corpus, tmp_path):
    run_ranks(2, options(tiny_corpus, tmp_path / "ddp", 4), tmp_path / "w")
    rank0 = load_file(tmp_path / "w" / "rank0.safetensors")
    rank1 = load_file(tmp_path / "w" / "rank1.safetensors")
    assert_close(rank0, rank1, 0.0)  # all-reduced gradients: the ranks never diverge
    alone = single_process(options(tiny_corpus, tmp_path / "one", 4))
    assert_close(rank0, alone, 1e-5)  # same global batch, summed in another order
    gap = sum(float((alone[k] - v).abs().sum()) for k, v in rank0.items())
    assert gap < 1e-3 * sum(float(v.abs().sum()) for v in alone.values())
    from mos_search.models.checkpoint import read_state

    state = read_state(tmp_path / "ddp")
    assert state["step"] == 4 and state["world_size"] == 2
    lines = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 5  # rank 0 alone logs: 4 steps and the final validation


def test_resume_on_another_number_of_ranks(tiny_corpus, tmp_path):
    """Two steps on 2 ranks, then two more in one process == four steps in one process.

    Random sampling (one small sub-network a step) leaves layers without gradients: they must
    stay untouched on every rank, as in one process.
    """
    out = tmp_path / "switch"
    run_ranks(2, options(tiny_corpus, out, 2, sampling="random"), tmp_path / "w")
    resumed = single_process(options(tiny_corpus, out, 4, sampling="random"), resume=True)
    straight = single_process(options(tiny_corpus, tmp_path / "straight", 4, sampling="random"))
    assert_close(resumed, straight, 1e-4)


def test_bf16_on_a_cpu_without_native_bf16_falls_back_to_float32(
    tiny_corpus, tmp_path, monkeypatch, capsys
):
    from mos_search.training import distributed
    from mos_search.training.train import Trainer

    monkeypatch.setattr(distributed, "cpu_has_native_bf16", lambda: False)
    config = replace(options(tiny_corpus, tmp_path / "r", 1), precision="bf16")
    trainer = Trainer(config)
    assert "no native bf16" in capsys.readouterr().out
    assert trainer.bf16 is False
    with activation_dtypes(trainer.model) as seen:
        trainer.train_step()
    assert seen == {torch.float32}


@pytest.mark.parametrize(
    ("native", "speedup", "chosen"), [(True, 7.0, True), (True, 1.2, False), (False, 7.0, False)]
)
def test_auto_precision_on_the_cpu_follows_a_measurement(monkeypatch, native, speedup, chosen):
    """`auto` on a CPU: bf16 only with native bf16 and a measured matmul speed-up over the
    threshold, said in one line; no measurement at all without native bf16."""
    from mos_search.training import distributed

    measured = []
    monkeypatch.setattr(distributed, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(
        distributed, "cpu_bf16_matmul_speedup", lambda: measured.append(1) or speedup
    )
    lines = []
    assert distributed.use_bf16("auto", torch.device("cpu"), lines.append) is chosen
    assert distributed.use_bf16("fp32", torch.device("cpu"), lines.append) is False
    if native:
        assert len(lines) == 1 and f"{speedup:.1f}x" in lines[0]
        assert ("bf16 autocast" in lines[0]) is chosen
    else:
        assert lines == [] and measured == []


def test_the_bf16_matmul_speedup_is_measured():
    from mos_search.training.distributed import cpu_bf16_matmul_speedup

    assert 0 < cpu_bf16_matmul_speedup(repeats=2) < 100


# Held-out NLL after WATCHED_STEPS steps must be at least LEARNING_MARGIN below the NLL before
# them: the CPU float32 run goes 21% lower (4.69 -> 3.71 nats/token); bf16 autocast rounds the
# activations, not the float32 weights or Adam's state, so it learns about as fast; a run whose
# updates are lost (no step, zero or NaN gradients) stays where it started.
WATCHED_STEPS, LEARNING_MARGIN = 10, 0.10


@dataclass
class WatchedTraining:
    """Training steps watched from outside: the largest arch's validation NLL (nats/token)
    before and after, each step's loss, and the dtypes of the activations the forwards made."""

    nll_before: float
    nll_after: float
    losses: list[float]
    activation_dtypes: set[torch.dtype]


@contextmanager
def activation_dtypes(model: torch.nn.Module) -> Iterator[set[torch.dtype]]:
    """The dtypes of the floating-point outputs of every module of `model` while inside."""
    seen: set[torch.dtype] = set()

    def record(module, inputs, output):
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            seen.add(output.dtype)

    handles = [m.register_forward_hook(record) for m in model.modules()]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def validation_nll(trainer) -> float:
    """The largest arch's validation NLL, in eval mode (no autocast: evaluation is float32)."""
    trainer.model.eval()
    try:
        return trainer.task.valid_nll(trainer.model, trainer.space.largest())
    finally:
        trainer.model.train()


def watched_training(trainer, steps: int) -> WatchedTraining:
    """`steps` optimizer steps of `trainer`, watched."""
    before = validation_nll(trainer)
    with activation_dtypes(trainer.model) as seen:
        losses = [trainer.train_step()[0] for _ in range(steps)]
    return WatchedTraining(before, validation_nll(trainer), losses, seen)


def assert_learned(watched: WatchedTraining) -> None:
    assert all(math.isfinite(loss) for loss in watched.losses), watched.losses
    assert watched.nll_after <= (1 - LEARNING_MARGIN) * watched.nll_before, watched


def assert_oracle_agrees(trainer, watched: WatchedTraining) -> None:
    """The checkpoint, read back by the oracle on the CPU, scores what the trainer measured."""
    from mos_search.oracle.scoring import Oracle

    trainer.save()
    loss = Oracle(trainer.run_dir, split="valid", cache_path=None).loss(trainer.space.largest())
    assert loss == pytest.approx(watched.nll_after, abs=1e-3)


def test_float32_training_on_the_cpu_is_watched_and_learns(tiny_corpus, tmp_path):
    """The CPU half of test_bf16_training_on_a_gpu: the same watch, in float32."""
    from mos_search.training.train import Trainer

    trainer = Trainer(options(tiny_corpus, tmp_path / "cpu", WATCHED_STEPS))
    watched = watched_training(trainer, WATCHED_STEPS)
    assert watched.activation_dtypes == {torch.float32}  # precision fp32: no autocast
    assert_learned(watched)
    assert_oracle_agrees(trainer, watched)
    with activation_dtypes(trainer.model) as seen, torch.autocast("cpu", dtype=torch.bfloat16):
        batch = trainer.task.batch(trainer.task.batches(0)[0], 0, trainer.dist.device)
        trainer.task.loss(trainer.model, trainer.space.largest(), batch)
    assert torch.bfloat16 in seen  # the watch sees autocast where it runs


def test_bf16_training_on_a_cpu_with_native_bf16(tiny_corpus, tmp_path):
    """bf16 autocast on a CPU that has AVX512-BF16 or AMX: bf16 activations, float32 weights,
    attention in float32 (see transformer.Attention.attend), and it learns."""
    from mos_search.training.distributed import cpu_has_native_bf16
    from mos_search.training.train import Trainer

    if not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16")
    config = replace(options(tiny_corpus, tmp_path / "bf16", WATCHED_STEPS), precision="bf16")
    trainer = Trainer(config)
    assert trainer.bf16
    watched = watched_training(trainer, WATCHED_STEPS)
    assert torch.bfloat16 in watched.activation_dtypes
    for name, weight in trainer.model.named_parameters():
        assert weight.dtype == torch.float32, name
    assert_learned(watched)
    assert_oracle_agrees(trainer, watched)


@pytest.mark.gpu
def test_bf16_training_on_a_gpu(tiny_corpus, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from mos_search.training.train import Trainer

    config = options(tiny_corpus, tmp_path / "gpu", WATCHED_STEPS)
    trainer = Trainer(replace(config, device="cuda", precision="bf16"))
    watched = watched_training(trainer, WATCHED_STEPS)
    assert torch.bfloat16 in watched.activation_dtypes  # the forward ran under bf16 autocast
    for name, weight in trainer.model.named_parameters():  # autocast leaves the weights float32
        assert (weight.device.type, weight.dtype) == ("cuda", torch.float32), name
    assert_learned(watched)
    assert_oracle_agrees(trainer, watched)
