"""Supernet and standalone training: token-budget batches, sandwich or random sampling, resumable.

One step: sample architectures (sandwich rule: largest + smallest + k random; or k random, HAT's
way), accumulate their gradients on the same batch, clip, Adam step. Architecture samples are
seeded by (seed, step), dropout by (seed, step, rank) and batches by (seed, epoch), so a resumed
run (weights, optimizer and data position restored) ends with the same weights as an
uninterrupted one. Under `torchrun` the ranks share out each global batch (see distributed.py).
"""

from __future__ import annotations

import json
import math
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mos_search.checkpoint import (
    OPTIMIZER_FILE,
    load_tensors,
    load_weights,
    read_state,
    resolve_checkpoint,
    restore_optimizer,
    save_checkpoint,
)
from mos_search.constants import MODES, SAMPLINGS
from mos_search.distributed import (
    PRECISIONS,
    all_reduce_gradients,
    all_reduce_sum,
    any_rank,
    barrier,
    init_distributed,
    shutdown,
    use_bf16,
)
from mos_search.errors import CheckpointError, ConfigError
from mos_search.models import build_model, spec_space, standalone_spec, supernet_spec
from mos_search.space import ArchBase, SearchSpace, load_space, space_from_dict
from mos_search.supernet import ElasticModel, SupernetConfig
from mos_search.tasks import make_task


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved in every checkpoint.

    With `arch` set, one architecture is trained alone (a standalone model), not a supernet.
    `max_steps` and `minutes` are budgets (whichever ends first; `minutes` counts across resumes).
    """

    data: str
    out: str
    space: str = "cpu-small"
    mode: str = "neuron"
    experts: int = 2
    mos_attention: bool = False
    arch: dict | None = None
    init_from: str | None = None  # with `arch`: start from its weights extracted from this supernet
    sampling: str = "sandwich"
    random_archs: int = 2
    max_tokens: int = 4096
    max_len: int = 128
    lr: float = 1e-3
    warmup: int = 200
    clip_norm: float = 1.0
    label_smoothing: float = 0.1
    dropout: float = 0.1
    scale_dropout: bool = False
    weight_decay: float = 0.0
    max_steps: int = 1000
    minutes: float | None = None
    save_every: int = 100
    log_every: int = 10
    valid_every: int = 200
    valid_limit: int = 500
    keep: int = 2
    seed: int = 1
    threads: int = 1
    device: str = "auto"  # auto: this rank's GPU if there is one, else the CPU
    precision: str = "auto"  # auto: bf16 autocast on a GPU, float32 on the CPU

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode: expected one of {', '.join(MODES)}, found {self.mode!r}")
        if self.sampling not in SAMPLINGS:
            raise ConfigError(
                f"sampling: expected one of {', '.join(SAMPLINGS)}, found {self.sampling!r}"
            )
        if self.sampling == "random" and self.random_archs < 1:
            raise ConfigError("random sampling needs random_archs >= 1")
        for name in (
            "max_tokens",
            "max_steps",
            "save_every",
            "log_every",
            "threads",
            "max_len",
            "keep",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"{name}: expected a positive integer, found {getattr(self, name)}"
                )
        if self.random_archs < 0 or self.warmup < 0 or self.valid_every < 0:
            raise ConfigError("random_archs, warmup and valid_every must be >= 0")
        if not self.lr > 0:
            raise ConfigError(f"lr: expected a positive number, found {self.lr}")
        if not 0 <= self.label_smoothing < 1 or not 0 <= self.dropout < 1:
            raise ConfigError("label_smoothing and dropout must be in [0, 1)")
        if self.init_from is not None and self.arch is None:
            raise ConfigError("init_from (fine-tuning) needs the architecture to fine-tune")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"precision: expected one of {', '.join(PRECISIONS)}, found {self.precision!r}"
            )
        if self.max_tokens < self.max_len:
            raise ConfigError(
                f"max_tokens ({self.max_tokens}) must be at least max_len ({self.max_len})"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`; unknown keys are an error."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return cls(**data)


class ArchSampler:
    """The architectures of each step, a pure function of (seed, step): same on every rank."""

    def __init__(
        self,
        space: SearchSpace,
        sampling: str,
        random_archs: int,
        seed: int,
        fixed: ArchBase | None = None,
    ) -> None:
        self.space, self.sampling, self.k, self.seed, self.fixed = (
            space,
            sampling,
            random_archs,
            seed,
            fixed,
        )

    def archs(self, step: int) -> list[ArchBase]:
        """Architectures trained at `step`."""
        if self.fixed is not None:
            return [self.fixed]
        rng = random.Random(self.seed * 1_000_003 + step)
        sampled = [self.space.sample(rng) for _ in range(self.k)]
        if self.sampling == "sandwich":
            return [self.space.largest(), self.space.smallest(), *sampled]
        return sampled


def inverse_sqrt_lr(step: int, peak: float, warmup: int) -> float:
    """Linear warm-up to `peak` over `warmup` steps, then decay as 1/sqrt(step)."""
    step = max(step, 1)
    if warmup <= 0:
        return peak
    return peak * min(step / warmup, math.sqrt(warmup / step))


def model_spec(config: TrainConfig, space: SearchSpace, vocab_size: int) -> dict[str, Any]:
    """Description of the model a training config builds."""
    if config.arch is not None:
        arch = space.arch_from_dict(config.arch)
        return standalone_spec(space, arch, vocab_size, config.dropout)
    return supernet_spec(
        SupernetConfig(
            space=space,
            vocab_size=vocab_size,
            mode=config.mode,
            experts=config.experts,
            mos_attention=config.mos_attention,
            dropout=config.dropout,
            scale_dropout=config.scale_dropout,
        )
    )


@dataclass
class TrainResult:
    """Where a run ended."""

    run_dir: Path
    step: int
    checkpoint: Path
    interrupted: bool
    last_loss: float | None


class Trainer:
    """One training run: builds or resumes the model, then runs steps until a budget is spent."""

    def __init__(self, config: TrainConfig, resume: bool = False) -> None:
        self.run_dir = Path(config.out)
        state: dict[str, Any] = {}
        if resume:
            state = read_state(self.run_dir)
            changes = {k: getattr(config, k) for k in RESUMABLE_CHANGES}
            config = resumed_config(self.run_dir, **changes)
        elif (self.run_dir / "checkpoints").exists():
            raise CheckpointError(
                f"{self.run_dir} already holds a run; pass --resume to continue "
                "it or choose another --out"
            )
        self.config = config
        self.dist = init_distributed(config.device)
        self.bf16 = use_bf16(config.precision, self.dist.device)
        torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        initial = None
        if config.init_from is not None and not state:
            from mos_search.models import load_model

            initial = load_model(config.init_from)
        if state:
            space = space_from_dict(spec_space(state["model"]), "checkpoint")
        else:
            space = initial.space if initial is not None else load_space(config.space)
        self.task = make_task(space.task, config)
        self.spec = state.get("model") or model_spec(config, space, self.task.vocab_size)
        self.model = build_model(self.spec).train().to(self.dist.device)
        if initial is not None:  # fine-tuning: the sub-network's inherited weights
            if initial.vocab_size != self.task.vocab_size:
                raise CheckpointError(
                    f"{config.init_from} has a {initial.vocab_size}-token vocabulary; "
                    f"{config.data} has {self.task.vocab_size}"
                )
            inherited = initial.sub_network(space.arch_from_dict(config.arch))
            self.model.load_state_dict(inherited.state_dict())  # copies onto the device
        if isinstance(self.model, ElasticModel):
            self.space, fixed = self.model.config.space, None
        else:
            self.space, fixed = space_from_dict(self.spec["space"], "checkpoint"), self.model.arch
        self.sampler = ArchSampler(
            self.space, config.sampling, config.random_archs, config.seed, fixed
        )
        self.optimizer = torch.optim.Adam(
            self.model.parameters(),
            lr=config.lr,
            betas=(0.9, 0.98),
            eps=1e-8,
            weight_decay=config.weight_decay,
        )
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.elapsed, self.tokens_seen = 0.0, 0
        self.corpus_digest = self.task.digest
        self._epoch_batches: tuple[int, list[list[int]]] | None = None
        self._saved_step: int | None = None
        self._saved_elapsed: float | None = None
        self._stop_requested = False
        if state:
            self._restore(state)
            self._saved_step, self._saved_elapsed = self.step, self.elapsed
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.world > 1 and self.dist.is_main and not state:
            print(f"data-parallel training on {self.dist.world} ranks ({self.dist.device.type})")

    def _restore(self, state: dict[str, Any]) -> None:
        load_weights(self.model, self.run_dir)
        tensors = load_tensors(self.run_dir, OPTIMIZER_FILE)
        restore_optimizer(self.optimizer, tensors, state["optimizer"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.batch_in_epoch, self.elapsed = state["batch_in_epoch"], state["elapsed_seconds"]
        self.tokens_seen = state["tokens_seen"]
        if state.get("corpus_digest") != self.corpus_digest:
            raise CheckpointError(f"{self.config.data} is not the corpus this run was trained on")

    # ------------------------------------------------------------------ steps
    def _next_batch(self) -> tuple[list[int], int]:
        """Example indices of the next batch and the epoch they belong to."""
        if self._epoch_batches is None or self._epoch_batches[0] != self.epoch:
            self._epoch_batches = (self.epoch, self.task.batches(self.epoch))
        batches = self._epoch_batches[1]
        if self.batch_in_epoch >= len(batches):
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            return self._next_batch()
        indices = batches[self.batch_in_epoch]
        self.batch_in_epoch += 1
        return indices, self.epoch

    def train_step(self) -> tuple[float, float, int]:
        """One optimizer step; returns (loss per token, nll per token, target tokens).

        Losses are sums over tokens; the gradient is divided by the global token count after
        the ranks' gradients are summed, so any number of ranks gives the one-process update.
        Dropout is seeded by (seed, step, rank): a resumed run repeats an uninterrupted one on
        the same number of ranks (and on any number when dropout is 0).
        """
        cfg = self.config
        indices, epoch = self._next_batch()
        shard = self.dist.shard(indices)
        archs = self.sampler.archs(self.step)
        torch.manual_seed(cfg.seed * 1_000_003 + self.step * 8_191 + self.dist.rank)
        self.optimizer.zero_grad(set_to_none=True)
        loss_total = nll_total = 0.0
        ntokens = 0
        batch = self.task.batch(shard, epoch, self.dist.device) if shard else None
        for arch in archs:
            if batch is None:  # fewer examples than ranks: this rank adds zero gradients
                break
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
                loss, nll, ntokens = self.task.loss(self.model, arch, batch)
            (loss / len(archs)).backward()
            loss_total, nll_total = loss_total + loss.item(), nll_total + nll.item()
        all_reduce_gradients(self.model, self.dist)
        ntokens, loss_total, nll_total = all_reduce_sum([ntokens, loss_total, nll_total], self.dist)
        ntokens = int(ntokens)
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad.div_(max(ntokens, 1))
        if cfg.clip_norm > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
        lr = inverse_sqrt_lr(self.step + 1, cfg.lr, cfg.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.step += 1
        self.tokens_seen += ntokens
        denominator = ntokens * len(archs)
        return loss_total / denominator, nll_total / denominator, ntokens

    def validate(self) -> dict[str, float]:
        """Validation NLL per token of the largest and smallest archs (or the standalone one);
        computed by rank 0 only (the others return nothing)."""
        if not self.dist.is_main:
            return {}
        self.model.eval()
        archs = (
            self.sampler.archs(0)[:1]
            if self.sampler.fixed
            else [self.space.largest(), self.space.smallest()]
        )
        names = ["arch"] if self.sampler.fixed else ["largest", "smallest"]
        out = {
            f"valid_nll_{name}": self.task.valid_nll(self.model, arch)
            for name, arch in zip(names, archs)
        }
        self.model.train()
        return out

    def save(self) -> None:
        """Checkpoint the current step (rank 0 writes; every rank waits for it)."""
        self._saved_step, self._saved_elapsed = self.step, self.elapsed
        if not self.dist.is_main:
            barrier(self.dist)
            return
        state = {
            "model": self.spec,
            "train_config": self.config.to_dict(),
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "elapsed_seconds": self.elapsed,
            "tokens_seen": self.tokens_seen,
            "corpus_digest": self.corpus_digest,
            "world_size": self.dist.world,
        }
        save_checkpoint(
            self.run_dir, self.step, self.model, state, self.optimizer, self.config.keep
        )
        barrier(self.dist)

    def _log(self, record: dict[str, Any]) -> None:
        """Append a metrics line stamped with step, epoch and elapsed seconds (rank 0 only)."""
        if not self.dist.is_main:
            return
        stamped = {
            "step": self.step,
            "epoch": self.epoch,
            "elapsed_s": round(self.elapsed, 1),
            **record,
        }
        with (self.run_dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(stamped) + "\n")

    def _budget_left(self) -> bool:
        cfg = self.config
        if self.step >= cfg.max_steps:
            return False
        return cfg.minutes is None or self.elapsed < cfg.minutes * 60

    def request_stop(self) -> None:
        """Stop after the step in progress (what the first Ctrl-C does)."""
        self._stop_requested = True

    def _on_sigint(self, signum: int, frame: object) -> None:
        if self._stop_requested:  # a second Ctrl-C: stop now, keep the last saved checkpoint
            raise KeyboardInterrupt
        self.request_stop()

    def run(self, progress: bool = True) -> TrainResult:
        """Train until `max_steps` or `minutes`.

        The first Ctrl-C lets the step in progress finish, then saves it (so a resumed run is
        exactly an uninterrupted one); a second one stops at once and keeps the last checkpoint.
        """
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        cfg = self.config
        if self.dist.is_main:
            (self.run_dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        progress = progress and self.dist.is_main
        self._stop_requested, hard_stop, last_loss = False, False, None
        window_tokens, window_time = 0, 0.0
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, self._on_sigint) if in_main_thread else None
        columns = [
            TextColumn("train"),
            BarColumn(),
            TextColumn("step {task.completed}/{task.total}"),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
        ]
        try:
            with Progress(*columns, disable=not progress, transient=False) as bar:
                task = bar.add_task("train", total=cfg.max_steps, completed=self.step, status="")
                clock = time.perf_counter()
                while not any_rank(not self._budget_left() or self._stop_requested, self.dist):
                    started = time.perf_counter()
                    loss, nll, ntokens = self.train_step()
                    now = time.perf_counter()
                    spent = now - started
                    # the budget is wall-clock, validation and saving included
                    self.elapsed, clock = self.elapsed + now - clock, now
                    window_tokens, window_time = window_tokens + ntokens, window_time + spent
                    last_loss = loss
                    record: dict[str, Any] = {}
                    if self.step % cfg.log_every == 0:
                        record = {
                            "loss": round(loss, 4),
                            "nll": round(nll, 4),
                            "lr": inverse_sqrt_lr(self.step, cfg.lr, cfg.warmup),
                            "tokens_per_s": round(window_tokens / max(window_time, 1e-9)),
                        }
                        window_tokens, window_time = 0, 0.0
                    if cfg.valid_every and self.step % cfg.valid_every == 0:
                        record.update(self.validate())
                    if self.step % cfg.save_every == 0:
                        self.save()
                    now = time.perf_counter()
                    self.elapsed, clock = self.elapsed + now - clock, now
                    if record:
                        self._log(record)
                    bar.update(
                        task,
                        completed=self.step,
                        status=f"loss {loss:.3f}  {ntokens / spent:,.0f} tok/s",
                    )
        except KeyboardInterrupt:
            hard_stop = True
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if hard_stop:  # no collective calls: the other ranks stop on their own signal
            shutdown(self.dist)
            checkpoint = resolve_checkpoint(self.run_dir)
            return TrainResult(self.run_dir, self.step, checkpoint, True, last_loss)
        if self._saved_step != self.step or self._saved_elapsed != self.elapsed:
            self.save()  # also when only the clock moved: the budget check reads it
        if not self._stop_requested:
            self._log({"final": True, **self.validate()})
        barrier(self.dist)
        shutdown(self.dist)
        checkpoint = resolve_checkpoint(self.run_dir)
        interrupted = self._stop_requested
        return TrainResult(self.run_dir, self.step, checkpoint, interrupted, last_loss)


RESUMABLE_CHANGES = (
    "data",
    "max_steps",
    "minutes",
    "save_every",
    "log_every",
    "valid_every",
    "keep",
    "threads",
    "device",
    "precision",
)


def resumed_config(out: str | Path, **changes: Any) -> TrainConfig:
    """The saved config of the run in `out`, with the settings a resume may change replaced.

    Budgets, the data location, logging and threads may change; anything that would make the
    continued run differ from an uninterrupted one (model, sampling, optimizer) may not.
    """
    saved = TrainConfig.from_dict(read_state(out)["train_config"])
    fixed = sorted(
        k for k, v in changes.items() if k not in RESUMABLE_CHANGES and v != getattr(saved, k, v)
    )
    if fixed:
        raise ConfigError(
            f"--resume continues the run as configured; {', '.join(fixed)} cannot "
            f"change (only {', '.join(RESUMABLE_CHANGES)} can)"
        )
    return replace(
        saved, **{k: v for k, v in changes.items() if k in RESUMABLE_CHANGES}, out=str(out)
    )


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train (or resume) a supernet or standalone model as `config` says."""
    return Trainer(config, resume).run(progress)
