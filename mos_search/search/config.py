"""Typed settings of a search: budgets with units, cost objectives, the oracle, verification.

Everything a search depends on is a frozen value here, checked when it is made, and saved as
`search.json` in the run folder so a run resumes exactly (`options.py` makes one from the
options of `mos-search search`).

Units live in the types: a `Budget` says whether its limit is milliseconds (latency on a device),
MiB (parameter memory) or a count (parameters); a `Cost` objective says the same of its values.
Nothing downstream branches on units.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from mos_search.errors import ConfigError
from mos_search.settings import dataclass_from_dict

if TYPE_CHECKING:
    from mos_search.costs.elsewhere import Elsewhere

DEFAULT_LATENCY_CONFIDENCE = 0.9  # latency budgets hold with this probability by default

FORMAT = 2  # of search.json; 1 (no "format") kept the oracle settings in an untyped "extra"

TASKS = ("mt", "bert")
OBJECTIVES = {"mt": "bleu-latency", "bert": "perplexity-memory"}
QUALITY_METRICS = {"mt": ("loss", "bleu"), "bert": ("perplexity",)}
ALGORITHMS = ("nsga2", "hat-evo", "nsga2-assisted", "random")
ALGORITHM_POPULATION = {"nsga2": 40, "hat-evo": 125}  # HAT: 25 parents + 50 + 50 children

# direction of each quality metric: +1 lower is better, -1 higher is better
QUALITY_SIGN = {"loss": 1.0, "bleu": -1.0, "perplexity": 1.0}

UNITS = {"latency": "ms", "memory": "MiB", "peak-memory": "MiB", "params": "count"}
BUDGET_FLAGS = {
    "latency": "--max-latency-ms",
    "memory": "--max-memory-mib",
    "peak-memory": "--max-memory-mib",
    "params": "--max-params",
}
MEMORY_COST = "params-fp32"  # the memory objective: parameter MiB of the encoder in fp32
# a translation memory limit: the peak memory of the deployment on its device (a constraint,
# predicted by a memory model, `latency.memory_model`, and measured in verification)
PEAK_MEMORY_COST = "peak-memory"


@dataclass(frozen=True)
class Cost:
    """One cost objective of a search: its key in an evaluation's `costs`, metric and unit.

    Latency costs are keyed by device profile and predicted; the memory cost (`MEMORY_COST`) is
    the exact parameter memory of the extracted encoder.
    """

    key: str
    metric: str  # "latency" or "memory"

    @property
    def unit(self) -> str:
        """ "ms" or "MiB"."""
        return UNITS[self.metric]

    @property
    def label(self) -> str:
        """An axis label with the unit."""
        if self.metric == "latency":
            return f"predicted latency on {self.key} ({self.unit})"
        return f"encoder parameter memory, fp32, embeddings included ({self.unit})"


@dataclass(frozen=True)
class Budget:
    """A hard limit: latency on a device (ms), parameter memory (MiB, BERT), peak deployment
    memory (MiB, translation) or parameter count.

    `Budget("latency", "ms", 80.0, "onnxruntime-cpu")`; the constructors `latency_ms`,
    `memory_mib`, `peak_memory_mib` and `params` fill the unit. A wrong unit for the metric is a
    ConfigError.
    """

    metric: str
    unit: str
    limit: float
    device: str | None = None

    def __post_init__(self) -> None:
        if self.metric not in UNITS:
            raise ConfigError(
                f"budget metric: expected one of {', '.join(UNITS)}, found {self.metric!r}"
            )
        if self.unit != UNITS[self.metric]:
            raise ConfigError(
                f"a {self.metric} budget is in {UNITS[self.metric]}, found unit {self.unit!r}"
            )
        if not (math.isfinite(self.limit) and self.limit > 0):  # nan fails every comparison
            raise ConfigError(
                f"{self.flag} {self.limit:g}: must be positive (a finite number of {self.unit})"
            )
        if (self.metric == "latency") != (self.device is not None):
            raise ConfigError("a latency budget names its device; other budgets name none")

    @classmethod
    def latency_ms(cls, limit: float, device: str) -> Budget:
        """A latency budget on `device` in milliseconds."""
        return cls("latency", "ms", float(limit), device)

    @classmethod
    def memory_mib(cls, limit: float) -> Budget:
        """A parameter-memory budget in MiB (fp32)."""
        return cls("memory", "MiB", float(limit))

    @classmethod
    def peak_memory_mib(cls, limit: float) -> Budget:
        """A translation deployment's peak-memory budget in MiB (`PEAK_MEMORY_COST`)."""
        return cls("peak-memory", "MiB", float(limit))

    @classmethod
    def params(cls, limit: int) -> Budget:
        """A parameter-count budget."""
        return cls("params", "count", int(limit))

    @property
    def name(self) -> str:
        """Name of the constraint: `latency[DEVICE]`, `memory` or `params`."""
        return f"latency[{self.device}]" if self.device else self.metric

    @property
    def cost_key(self) -> str | None:
        """The cost objective this budget limits (None: the parameter count)."""
        if self.metric == "latency":
            return self.device
        return {"memory": MEMORY_COST, "peak-memory": PEAK_MEMORY_COST}.get(self.metric)

    @property
    def flag(self) -> str:
        """The `mos-search search` option that sets this budget."""
        return BUDGET_FLAGS[self.metric]

    def value(self, costs: dict[str, float], params: int) -> float:
        """The limited quantity of an architecture, from its costs and parameter count."""
        return params if self.cost_key is None else costs[self.cost_key]

    def format(self, value: float) -> str:
        """A value in this budget's unit: `81.20 ms`, `12.50 MiB`, `5,000,000 parameters`."""
        if self.unit == "count":
            return f"{int(value):,} parameters"
        return f"{value:.2f} {self.unit}"

    def describe(self) -> str:
        """The budget itself: `80 ms on onnxruntime-cpu`, `12 MiB`, `5,000,000 parameters`."""
        if self.unit == "count":
            return self.format(self.limit)
        where = f" on {self.device}" if self.device else ""
        what = " peak memory" if self.metric == "peak-memory" else ""
        return f"{self.limit:g} {self.unit}{what}{where}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Budget:
        """Inverse of `to_dict`."""
        return dataclass_from_dict(cls, data, "budget")


@dataclass(frozen=True)
class OracleSettings:
    """How the search scores quality: checkpoint, data, validation slice, decoding, processes."""

    checkpoint: str
    data: str | None = None  # None: the corpus the checkpoint was trained on
    limit: int | None = 200  # validation sentences, spread over the split
    beam: int = 1  # for --quality bleu
    threads: int = 2
    workers: int = 1  # >1: a pool of scoring processes, one thread each (same numbers)

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit: expected a positive number, found {self.limit}")
        for name in ("beam", "threads", "workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name}: expected at least 1, found {getattr(self, name)}")


@dataclass(frozen=True)
class VerifySettings:
    """How the front is re-checked: test sentences, beam, how many front members, how many
    separated measuring passes each gets, and the rest of BLEU's decoding (`oracle/beam.py`)."""

    test_limit: int | None = 300
    beam: int = 5
    max_archs: int = 8
    passes: int = 3
    lenpen: float = 1.0
    no_repeat_ngram_size: int = 0
    elsewhere: Elsewhere | None = None  # measure on an SSH target or offline (costs.elsewhere)

    def __post_init__(self) -> None:
        flags = {"test_limit": "--verify-limit", "beam": "--verify-beam"}
        flags |= {"max_archs": "--verify-max", "passes": "--verify-passes"}
        for name, flag in flags.items():
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{flag}: expected at least 1, found {value}")
        if self.lenpen < 0 or self.no_repeat_ngram_size < 0:
            raise ConfigError(
                "--verify-lenpen and --verify-no-repeat-ngram: expected 0 or more, found "
                f"{self.lenpen} and {self.no_repeat_ngram_size}"
            )


# settings a resumed run may change (how long it goes on, how many scoring processes): key -> flag
RESUMABLE_CHANGES = {"generations": "--generations", "oracle.workers": "--workers"}


@dataclass(frozen=True)
class SearchConfig:
    """What to search and how; saved in the run folder (`search.json`) to resume exactly.

    `oracle` is None only when the caller brings its own quality function (tests, benchmarks).
    """

    task: str = "mt"
    algorithm: str = "nsga2"
    generations: int = 20
    population: int = 40
    seed: int = 0
    quality: str = "loss"
    devices: tuple[str, ...] = ("onnxruntime-cpu",)  # latency objectives (mt)
    predictors: tuple[str, ...] = ()  # one per device; empty: the shipped ones
    budgets: tuple[Budget, ...] = ()
    oracle: OracleSettings | None = None
    # latency budgets hold with this confidence: they constrain the upper bound of the
    # predictor's interval, not its mean (None: the mean, as mos-search 0.1 did)
    latency_confidence: float | None = DEFAULT_LATENCY_CONFIDENCE
    # the peak-memory model of a translation memory budget (`mos-search predictor memory`)
    memory_model: str | None = None
    # measure this many architectures on each device first and calibrate its predictor on them
    # (`search/calibration.py`); None: the predictors as they are
    calibrate: int | None = None
    format: int = field(default=FORMAT)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"--task: expected one of {', '.join(TASKS)}, found {self.task!r}")
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(
                f"algorithm: expected one of {', '.join(ALGORITHMS)}, found {self.algorithm!r}"
            )
        if self.generations < 1 or self.population < 2:
            raise ConfigError(
                f"generations and population must be >= 1 and >= 2, found {self.generations} "
                f"and {self.population}"
            )
        confidence = self.latency_confidence
        if confidence is not None and not 0.5 <= confidence < 1:
            raise ConfigError(f"--latency-confidence: expected [0.5, 1), found {confidence}")
        if self.calibrate is not None and (self.task != "mt" or self.calibrate < 3):
            raise ConfigError(
                f"--calibrate {self.calibrate}: for --task mt, at least 3 architectures"
            )
        if self.calibrate is not None and confidence is not None:
            needed = next(n for n in range(1, 10**6) if math.ceil((n + 1) * confidence) <= n)
            if self.calibrate < needed:
                raise ConfigError(
                    f"--calibrate {self.calibrate}: an upper bound at --latency-confidence "
                    f"{confidence:g} needs the residuals of at least {needed} architectures"
                )
        if self.quality not in QUALITY_METRICS[self.task]:
            raise ConfigError(f"--quality {self.quality} is not a metric of --task {self.task}")
        if self.predictors and len(self.predictors) != len(self.devices):
            raise ConfigError(
                f"{len(self.predictors)} --predictor files for {len(self.devices)} --device names"
            )
        if not self.costs:
            raise ConfigError("at least one --device is needed: its latency is an objective")
        keys = {c.key for c in self.costs}
        for budget in self.budgets:
            if budget.metric == "peak-memory":
                if self.task != "mt" or self.memory_model is None:
                    raise ConfigError(
                        f"{budget.flag}: a peak-memory budget is for --task mt and needs a "
                        "memory model (--memory-model)"
                    )
                continue
            if budget.cost_key is not None and budget.cost_key not in keys:
                raise ConfigError(
                    f"{budget.flag}: {budget.describe()} limits {budget.cost_key!r}, which is not "
                    f"an objective of this search ({', '.join(sorted(keys))})"
                )

    @property
    def objective(self) -> str:
        """ "bleu-latency" (mt) or "perplexity-memory" (bert)."""
        return OBJECTIVES[self.task]

    @property
    def costs(self) -> tuple[Cost, ...]:
        """The cost objectives: predicted latency per device (mt), parameter memory (bert)."""
        if self.task == "bert":
            return (Cost(MEMORY_COST, "memory"),)
        return tuple(Cost(device, "latency") for device in self.devices)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["devices"], data["predictors"] = list(self.devices), list(self.predictors)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        """Inverse of `to_dict` (settings of format 1 are read too); unknown keys are errors."""
        if isinstance(data, dict) and data.get("format", 1) == 1:
            data = _from_format_1(data)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"search settings: expected format {FORMAT}")
        oracle = data.get("oracle")
        return dataclass_from_dict(
            cls,
            data,
            "search settings",
            convert={
                "devices": tuple,
                "predictors": tuple,
                "budgets": lambda items: tuple(Budget.from_dict(b) for b in items),
                "oracle": lambda _: (
                    None
                    if oracle is None
                    else dataclass_from_dict(OracleSettings, oracle, "oracle settings")
                ),
            },
        )

    def resume_changes(self, saved: SearchConfig) -> list[str]:
        """Settings that differ from `saved` and may not change on resume."""
        mine, theirs = _flat(self.to_dict()), _flat(saved.to_dict())
        keys = set(mine) | set(theirs)
        return sorted(
            k for k in keys if mine.get(k) != theirs.get(k) and k not in RESUMABLE_CHANGES
        )


def _from_format_1(data: dict[str, Any]) -> dict[str, Any]:
    """Settings written before format 2 (mos-search 0.1 runs): the oracle settings in an untyped
    `extra`, budgets as `max_latency_ms` per device (MiB under "params-fp32" for BERT)."""
    old = dict(data)
    extra = dict(old.pop("extra", {}) or {})
    task = extra.pop("task", "mt")
    budgets = [
        Budget.memory_mib(limit) if key == MEMORY_COST else Budget.latency_ms(limit, key)
        for key, limit in (old.pop("max_latency_ms", {}) or {}).items()
    ]
    if old.get("max_params") is not None:
        budgets.append(Budget.params(old["max_params"]))
    old.pop("max_params", None)
    checkpoint = extra.pop("checkpoint", None)
    oracle_keys = ("data", "limit", "beam", "threads", "workers")
    oracle = {k: extra[k] for k in oracle_keys if k in extra}
    quality = old.pop("metric", "loss")
    return {
        "latency_confidence": None,  # 0.1 constrained the predicted mean
        **old,
        "format": FORMAT,
        "task": task,
        "quality": quality,
        "devices": [] if task == "bert" else old.get("devices", []),
        "predictors": extra.get("predictors", []),
        "budgets": [b.to_dict() for b in budgets],
        "oracle": None if checkpoint is None else {"checkpoint": checkpoint, **oracle},
    }


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
