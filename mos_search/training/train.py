"""Supernet and standalone training: token-budget batches, sandwich or random sampling, resumable.

One step: sample architectures (sandwich rule: largest + smallest + k random; or k random, HAT's
way), accumulate their gradients on the same batch, clip, Adam step. Architecture samples are
seeded by (seed, step), dropout by (seed, step, rank) and batches by (seed, epoch), so a resumed
run (weights, optimizer and data position restored) ends with the same weights as an
uninterrupted one. Under `torchrun` the ranks share out each global batch (see distributed.py).
The configuration (`TrainConfig`) and what a resume may change live in config.py, the
architectures and learning rate of each step in schedule.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mos_search.errors import CheckpointError
from mos_search.files import append_jsonl, check_writable_dir, write_json_atomic
from mos_search.interrupt import GracefulStop
from mos_search.models.build import build_model, check_spec_fits, spec_space
from mos_search.models.checkpoint import (
    OPTIMIZER_FILE,
    load_tensors,
    load_weights,
    read_state,
    resolve_checkpoint,
    restore_optimizer,
    save_checkpoint,
)
from mos_search.models.supernet import ElasticModel
from mos_search.space import load_space, space_from_dict
from mos_search.training.config import RESUMABLE_CHANGES, TrainConfig, model_spec, resumed_config
from mos_search.training.continuation import (
    MOMENTS_NONE,
    ContinuedSchedule,
    Segment,
    check_same_tokenizer,
    continuation_line,
    inherit_sub_network,
    lineage_dicts,
    lineage_of,
    lineage_through,
    restore_moments,
    source_commit,
)
from mos_search.training.diagnostics import diagnostics, router_grad_share
from mos_search.training.distributed import (
    all_reduce_gradients,
    all_reduce_sum,
    any_rank,
    barrier,
    init_distributed,
    shutdown,
    use_bf16,
)
from mos_search.training.progress import StepReport, TrainBudget, training_progress
from mos_search.training.schedule import ArchSampler
from mos_search.training.tasks import make_task


@dataclass
class TrainResult:
    """Where a run ended."""

    run_dir: Path
    step: int
    checkpoint: Path
    interrupted: bool
    last_loss: float | None
    is_main: bool = True  # rank 0 (or the only process): the one that reports


class Trainer:
    """One training run: builds or resumes the model, then runs steps until a budget is spent."""

    def __init__(self, config: TrainConfig, resume: bool = False) -> None:
        self.run_dir = Path(config.out)
        check_writable_dir(self.run_dir)  # before the data and model, not at the first save
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
        torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        initial = None
        init_state: dict[str, Any] = {}
        if config.init_from is not None and not state and config.arch is not None:
            from mos_search.models.build import load_model

            initial = load_model(config.init_from)
        elif config.init_from is not None and not state:  # a supernet continued from another
            init_state = read_state(config.init_from)
        if state or init_state:
            space = space_from_dict(spec_space((state or init_state)["model"]), "checkpoint")
        else:
            space = initial.space if initial is not None else load_space(config.space)
        self.task = make_task(space.task, config)
        self.spec = (
            state.get("model")
            or init_state.get("model")
            or model_spec(config, space, self.task.vocab_size)
        )
        source = config.out if state else (config.init_from if init_state else space.source)
        check_spec_fits(self.spec, training=True, source=str(source))
        self.model = build_model(self.spec).train().to(self.dist.device)
        if init_state:
            check_same_tokenizer(config.init_from, init_state, self.task, config.data)
            load_weights(self.model, resolve_checkpoint(config.init_from))
        if initial is not None:  # fine-tuning: the sub-network's inherited weights
            inherit_sub_network(self.model, initial, config, self.task.vocab_size)
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
        self._continue_from(init_state)
        self.corpus_digest = self.task.digest
        self._epoch_batches: tuple[int, list[list[int]]] | None = None
        self._saved_step, self._saved_elapsed = None, None  # of the latest checkpoint
        self._stop = GracefulStop()  # a fresh one for each `run`
        self._window_tokens, self._window_time = 0, 0.0  # throughput since the last log line
        self._last_loss: float | None = None
        self._logged_speed: float | None = None  # of the latest metrics line: progress shows it
        self._grad_share: float | None = None  # the routers' share of the latest logged step
        if state:
            self._restore(state)
            self._saved_step, self._saved_elapsed = self.step, self.elapsed
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.bf16 = self._choose_precision()  # once set up: a refused run says nothing of it
        self._announce(resumed=bool(state))

    def _choose_precision(self) -> bool:
        """Whether to train under bf16 autocast (`use_bf16`; rank 0 says why): every rank does
        if any rank's measurement says so, so all ranks agree."""
        say = print if self.dist.is_main else (lambda line: None)
        return any_rank(use_bf16(self.config.precision, self.dist.device, say), self.dist)

    @property
    def schedule(self) -> ContinuedSchedule:
        """The learning rate of each step: continues the lineage's steps (continuation.py)."""
        prior = sum(segment.steps for segment in self.lineage)
        return ContinuedSchedule(self.config.lr, self.config.warmup, prior, self.moments)

    def _continue_from(self, init_state: dict[str, Any]) -> None:
        """A supernet continued from another: the segments before this run and the Adam moments
        that came with it (none for a fresh run)."""
        self.lineage: list[Segment] = []
        self.moments = MOMENTS_NONE
        if init_state:
            self.lineage = lineage_through(init_state, source_commit(self.config.init_from))
            self.moments = restore_moments(self.config.init_from, self.model, self.optimizer)

    def _announce(self, resumed: bool) -> None:
        """On rank 0 alone: how many ranks train, and where a resumed run goes on from."""
        world, epoch, tokens = self.dist.world, self.epoch, self.tokens_seen
        if self.dist.is_main and world > 1:
            print(f"data-parallel training on {world} ranks ({self.dist.device.type})", flush=True)
        if self.dist.is_main and resumed:
            print(f"resumed from step {self.step} ({tokens:,} tokens, epoch {epoch})", flush=True)
        if self.dist.is_main and self.lineage:
            print(continuation_line(self.lineage, self.moments, resumed), flush=True)

    def _restore(self, state: dict[str, Any]) -> None:
        load_weights(self.model, self.run_dir)
        tensors = load_tensors(self.run_dir, OPTIMIZER_FILE)
        restore_optimizer(self.optimizer, tensors, state["optimizer"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.batch_in_epoch, self.elapsed = state["batch_in_epoch"], state["elapsed_seconds"]
        self.tokens_seen = state["tokens_seen"]
        self.lineage = lineage_of(state)
        self.moments = state.get("moments", MOMENTS_NONE)
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
            with torch.autocast(self.dist.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                loss, nll, ntokens = self.task.loss(self.model, arch, batch)
            (loss / len(archs)).backward()
            loss_total, nll_total = loss_total + loss.item(), nll_total + nll.item()
        all_reduce_gradients(self.model, self.dist)
        ntokens, loss_total, nll_total = all_reduce_sum([ntokens, loss_total, nll_total], self.dist)
        ntokens = int(ntokens)
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad.div_(max(ntokens, 1))
        # the routers' share of the gradient norm, before clipping (diagnostics)
        if (self.step + 1) % cfg.log_every == 0:
            self._grad_share = router_grad_share(self.model)
        if cfg.clip_norm > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
        lr = self.schedule.lr(self.step + 1)
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
            "lineage": lineage_dicts(self.lineage),
            "moments": self.moments,
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
        append_jsonl(self.run_dir / "metrics.jsonl", stamped)

    def _budget_left(self) -> bool:
        cfg = self.config
        if self.step >= cfg.max_steps:
            return False
        return cfg.minutes is None or self.elapsed < cfg.minutes * 60

    def request_stop(self) -> None:
        """Stop after the step in progress (what the first Ctrl-C does)."""
        self._stop.request()

    def run(self, progress: bool = True) -> TrainResult:
        """Train until `max_steps` or `minutes`.

        The first Ctrl-C lets the step in progress finish, then saves it (so a resumed run is
        exactly an uninterrupted one); a second one stops at once and keeps the last checkpoint.
        """
        if self.dist.is_main:
            write_json_atomic(self.run_dir / "train_config.json", self.config.to_dict())
        self._stop, self._last_loss, self._logged_speed = GracefulStop(), None, None
        self._window_tokens, self._window_time = 0, 0.0
        budget = TrainBudget(self.config.max_steps, self.config.minutes, self.step, self.elapsed)
        try:
            with self._stop, training_progress(progress and self.dist.is_main, budget) as shown:
                clock = time.perf_counter()
                while not any_rank(not self._budget_left() or self._stop.requested, self.dist):
                    report, clock = self._step_and_record(clock)
                    shown.update(report)
        except KeyboardInterrupt:  # no collective calls: the other ranks stop on their own signal
            shutdown(self.dist)
            checkpoint = resolve_checkpoint(self.run_dir)
            return TrainResult(
                self.run_dir, self.step, checkpoint, True, self._last_loss, self.dist.is_main
            )
        return self._finish()

    def _step_and_record(self, clock: float) -> tuple[StepReport, float]:
        """One step and its bookkeeping: the budget clock, metrics, validation and checkpoint.

        `clock` is when the time the budget counts last advanced; returns what progress shows
        of the step and the new `clock`. The budget is wall-clock, validation and saving included.
        """
        cfg = self.config
        started = time.perf_counter()
        loss, nll, ntokens = self.train_step()
        now = time.perf_counter()
        spent = now - started
        self.elapsed, clock = self.elapsed + now - clock, now
        self._window_tokens += ntokens
        self._window_time += spent
        self._last_loss = loss
        record: dict[str, Any] = {}
        if self.step % cfg.log_every == 0:
            record = {
                "loss": round(loss, 4),
                "nll": round(nll, 4),
                "lr": self.schedule.lr(self.step),
                "tokens_per_s": round(self._window_tokens / max(self._window_time, 1e-9)),
                **diagnostics(self.model, self._grad_share),  # {} without routers
            }
            self._logged_speed = record["tokens_per_s"]  # what progress shows, to the token
            self._window_tokens, self._window_time = 0, 0.0
        if cfg.valid_every and self.step % cfg.valid_every == 0:
            record.update(self.validate())
        if self.step % cfg.save_every == 0:
            self.save()
        now = time.perf_counter()
        self.elapsed, clock = self.elapsed + now - clock, now
        if record:
            self._log(record)
        report = StepReport(self.step, self.elapsed, loss, ntokens, spent, self._logged_speed)
        return report, clock

    def _finish(self) -> TrainResult:
        """After the loop: save what is not saved yet, validate (unless stopped early), close."""
        if self._saved_step != self.step or self._saved_elapsed != self.elapsed:
            self.save()  # also when only the clock moved: the budget check reads it
        if not self._stop.requested:
            self._log({"final": True, **self.validate()})
        barrier(self.dist)
        shutdown(self.dist)
        checkpoint = resolve_checkpoint(self.run_dir)
        interrupted, main = self._stop.requested, self.dist.is_main
        return TrainResult(self.run_dir, self.step, checkpoint, interrupted, self._last_loss, main)


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train (or resume) a supernet or standalone model as `config` says."""
    return Trainer(config, resume).run(progress)
