"""Data-parallel training under `torchrun`: process group, device choice, gradient all-reduce.

Launched by `torchrun --nproc-per-node N mos-search train ...`, every process reads RANK,
WORLD_SIZE and LOCAL_RANK from its environment and joins one process group: NCCL when it trains
on a GPU, gloo on the CPU. Without those variables (plain `mos-search train`) nothing is
initialised and every helper here is a no-op, so one code path serves both.

Each rank takes its share of every global batch; after the sub-architectures' backward passes the
ranks sum their gradients and token counts (`all_reduce`), so every rank applies the same update
and holds the same weights. Without dropout the result equals one process training on the whole
batch (to rounding); dropout masks are drawn per rank, so with dropout it matches in
distribution only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from mos_search.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: its rank among `world` processes and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs, validates and writes checkpoints."""
        return self.rank == 0

    def shard(self, indices: list[int]) -> list[int]:
        """This rank's share of a global batch (every world-th example)."""
        return indices[self.rank :: self.world]


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """`auto` (this rank's GPU if there is one, else the CPU), `cpu`, `cuda` or `cuda:N`."""
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {choice}: this PyTorch sees no CUDA device")
        return torch.device(choice if ":" in choice else f"cuda:{local_rank}")
    if choice != "cpu":
        raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, found {choice!r}")
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (AVX512-BF16 or AMX, as oneDNN sees
    it). Without it bf16 is emulated and far slower than float32 (on an AVX2-only AMD Zen 3: a
    2048x1024 @ 1024x1024 matmul 4.6 s in bf16, 28 ms in float32)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


# `auto` on a CPU trains under bf16 autocast only where a bf16 matmul is at least this much faster
# than float32 here and now: the whole step gains less (bench/throughput.py: 1.5x at a ~5x matmul)
AUTO_BF16_MIN_MATMUL_SPEEDUP = 2.0


def cpu_bf16_matmul_speedup(repeats: int = 5) -> float:
    """How much faster a (2048 x 1024) @ (1024 x 1024) matmul runs in bf16 than in float32 on
    this CPU, with the threads set now: the median of `repeats` interleaved pairs (~0.3 s)."""
    import statistics
    import time

    a, b = torch.randn(2048, 1024), torch.randn(1024, 1024)
    a16, b16 = a.bfloat16(), b.bfloat16()
    ratios = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        a @ b
        fp32 = time.perf_counter() - started
        started = time.perf_counter()
        a16 @ b16
        ratios.append(fp32 / max(time.perf_counter() - started, 1e-9))
    return statistics.median(ratios[1:])  # the first pair warms both kernels up


def use_bf16(precision: str, device: torch.device, echo: Callable[[str], None] = print) -> bool:
    """Whether to train under bf16 autocast.

    `auto`: on a GPU; on a CPU with native bf16 where a bf16 matmul measures at least
    AUTO_BF16_MIN_MATMUL_SPEEDUP times faster than float32 (said with `echo`); else float32.
    `bf16` on a CPU without native bf16 falls back to float32 with a message, since emulated bf16
    is many times slower.
    """
    if precision not in PRECISIONS:
        raise ConfigError(
            f"precision: expected one of {', '.join(PRECISIONS)}, found {precision!r}"
        )
    if device.type != "cpu" or precision == "fp32":
        return precision == "bf16" or (precision == "auto" and device.type == "cuda")
    capability = torch.backends.cpu.get_cpu_capability()
    if not cpu_has_native_bf16():
        if precision == "bf16":
            echo(
                f"--precision bf16: this CPU ({capability}) has no native bf16 (AVX512-BF16 or "
                "AMX), where bf16 is many times slower than float32: training in float32"
            )
        return False
    if precision == "bf16":
        return True
    speedup = cpu_bf16_matmul_speedup()
    chosen = speedup >= AUTO_BF16_MIN_MATMUL_SPEEDUP
    echo(
        f"--precision auto: {'bf16 autocast' if chosen else 'float32'} (this CPU: {capability} "
        f"with native bf16; a bf16 matmul measured {speedup:.1f}x float32's speed)"
    )
    return chosen


def init_distributed(device_choice: str = "auto") -> DistContext:
    """Join the `torchrun` process group if launched by it; else a single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_choice, local_rank)
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"rank {local_rank} wants cuda:{device.index}; {torch.cuda.device_count()} "
            "GPU(s) visible: start at most that many ranks per node"
        )
    if world <= 1:
        return DistContext(0, 1, device)
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), device)


def all_reduce_gradients(model: nn.Module, context: DistContext) -> None:
    """Sum every parameter's gradient over the ranks.

    A parameter no rank gave a gradient (a layer no sampled architecture uses) keeps `None`, as
    in one process: Adam skips it instead of moving it on its momentum.
    """
    if context.world <= 1:
        return
    params = list(model.parameters())
    present = [p.grad is not None for p in params]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flags = torch.tensor(present, dtype=grads[0].dtype, device=grads[0].device)
    flat = torch.cat([g.reshape(-1) for g in grads] + [flags])  # one collective for all
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
    for p, g, used in zip(params, grads, flat[offset:].tolist()):
        p.grad = g if used > 0 else None


def all_reduce_sum(values: list[float], context: DistContext) -> list[float]:
    """Element-wise sum of `values` over the ranks."""
    if context.world <= 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def any_rank(flag: bool, context: DistContext) -> bool:
    """True on every rank when `flag` is true on at least one (a shared stop decision)."""
    return all_reduce_sum([float(flag)], context)[0] > 0


def barrier(context: DistContext) -> None:
    """Wait for every rank (rank 0 writing a checkpoint, say)."""
    if context.world > 1:
        dist.barrier()


def shutdown(context: DistContext) -> None:
    """Leave the process group at the end of a run."""
    if context.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
