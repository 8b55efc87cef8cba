"""The training configuration: one frozen `TrainConfig`, saved in every checkpoint, and the rule
for what a resumed run may change (`RESUMABLE_CHANGES`, `resumed_config`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mos_search.constants import EXPERT_INITS, MODES, SAMPLINGS
from mos_search.errors import ConfigError
from mos_search.models.build import standalone_spec, supernet_spec
from mos_search.models.checkpoint import STATE_FILE, read_state, resolve_checkpoint
from mos_search.models.supernet import SupernetConfig
from mos_search.settings import dataclass_from_dict, naming_file
from mos_search.space import SearchSpace
from mos_search.training.distributed import PRECISIONS


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved in every checkpoint.

    With `arch` set, one architecture is trained alone (a standalone model), not a supernet.
    `max_steps` and `minutes` are budgets (whichever ends first; `minutes` counts across resumes).
    Every dropout of the model is here: `dropout` (residual and FFN), `attention_dropout` (the
    attention weights) and `router_dropout` (inside the MoS routers: layer and neuron modes);
    configs saved before the last two existed read them as the values those runs used.
    """

    data: str
    out: str
    space: str = "cpu-small"
    mode: str = "neuron"
    experts: int = 2
    mos_attention: bool = False
    arch: dict | None = None
    # with `arch`: start from its weights extracted from this supernet; without: continue this
    # supernet (its space, mode and weights; a fresh optimizer and schedule)
    init_from: str | None = None
    sampling: str = "sandwich"
    random_archs: int = 2
    max_tokens: int = 4096
    max_len: int = 128
    lr: float = 1e-3
    warmup: int = 200
    clip_norm: float = 1.0
    label_smoothing: float = 0.1
    dropout: float = 0.1
    attention_dropout: float = 0.0
    router_dropout: float = 0.1
    scale_dropout: bool = False
    expert_init: str = "independent"  # how MoS expert banks start (models.supernet.layers)
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
    # auto: bf16 autocast on a GPU, and on a CPU whose bf16 matmul measures >= 2x float32's
    precision: str = "auto"

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
        for name in ("label_smoothing", "dropout", "attention_dropout", "router_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(
                    f"{name}: expected a value in [0, 1), found {getattr(self, name)}"
                )
        if self.expert_init not in EXPERT_INITS:
            raise ConfigError(
                f"expert_init: expected one of {', '.join(EXPERT_INITS)}, "
                f"found {self.expert_init!r}"
            )
        if self.expert_init != "independent" and (self.mode == "shared" or self.arch):
            raise ConfigError(
                f"expert_init {self.expert_init!r} applies to a MoS supernet (mode layer or "
                "neuron, no arch); weight sharing and one architecture have no expert banks"
            )
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
        """Inverse of `to_dict`; missing or unknown keys raise ConfigError."""
        return dataclass_from_dict(cls, data, "training options")


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
    with naming_file(resolve_checkpoint(out) / STATE_FILE, "train_config"):
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


# TrainConfig fields that `mos-search train` takes as options (tests/test_pretrained.py checks
# them against the command), in the order the command line is written
TRAIN_FLAGS = (
    "data", "out", "init_from", "space", "mode", "experts", "mos_attention", "expert_init",
    "sampling", "random_archs",
    "max_tokens", "lr", "warmup", "dropout", "attention_dropout", "router_dropout",
    "scale_dropout", "max_steps", "minutes",
    "save_every", "log_every", "valid_every", "seed", "threads", "device", "precision",
)  # fmt: skip


def training_command(trained: dict[str, Any]) -> str:
    """The `mos-search train` command line of a run's training config: every setting that has a
    command-line option (`TRAIN_FLAGS`; the card's `train_config` holds them all)."""
    parts = ["mos-search train"]
    for key in TRAIN_FLAGS:
        value = trained.get(key)
        if value is None or value is False:
            continue
        flag = "--init" if key == "init_from" else "--" + key.replace("_", "-")
        parts.append(flag if value is True else f"{flag} {value}")
    return " ".join(parts)


def model_spec(config: TrainConfig, space: SearchSpace, vocab_size: int) -> dict[str, Any]:
    """Description of the model a training config builds."""
    if config.arch is not None:
        arch = space.arch_from_dict(config.arch)
        return standalone_spec(space, arch, vocab_size, config.dropout, config.attention_dropout)
    return supernet_spec(
        SupernetConfig(
            space=space,
            vocab_size=vocab_size,
            mode=config.mode,
            experts=config.experts,
            mos_attention=config.mos_attention,
            router_dropout=config.router_dropout,
            dropout=config.dropout,
            attention_dropout=config.attention_dropout,
            scale_dropout=config.scale_dropout,
            expert_init=config.expert_init,
        )
    )
