"""Data-parallel training: 2 CPU ranks (gloo) equal one process on the same global batch."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from mos_search.training.config import TrainConfig

from conftest import TINY_SPACE, tiny_train_config


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


def test_bf16_is_refused_on_the_cpu(tiny_corpus, tmp_path):
    from mos_search.errors import ConfigError
    from mos_search.training.train import Trainer

    config = replace(options(tiny_corpus, tmp_path / "r", 1), precision="bf16")
    with pytest.raises(ConfigError, match="CPU training runs in float32"):
        Trainer(config)


@pytest.mark.gpu
def test_bf16_training_on_a_gpu(tiny_corpus, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    config = replace(options(tiny_corpus, tmp_path / "gpu", 6), device="cuda", precision="bf16")
    weights = single_process(config)
    assert all(v.device.type == "cuda" for v in weights.values())
    from mos_search.oracle.scoring import Oracle
    from mos_search.space import load_space

    loss = Oracle(tmp_path / "gpu", split="valid", cache_path=None).loss(
        load_space(TINY_SPACE).largest()
    )
    assert 0 < loss < 10
