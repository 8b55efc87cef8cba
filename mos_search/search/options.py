"""The options of `mos-search search` as a `SearchConfig`: checks and dependent defaults.

`search_config` checks the combinations (task, objective, quality metric, budgets) and fills
the defaults that depend on other options (objective and metric by task, population by
algorithm); `latency_budgets` parses `--max-latency-ms`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mos_search.errors import ConfigError
from mos_search.search.config import (
    ALGORITHM_POPULATION,
    DEFAULT_LATENCY_CONFIDENCE,
    OBJECTIVES,
    QUALITY_METRICS,
    TASKS,
    Budget,
    OracleSettings,
    SearchConfig,
)

MEMORY_DEVICE = "onnxruntime-cpu"  # the device profile peak memory is measured with here


def latency_budgets(values: Sequence[str], devices: Sequence[str]) -> list[Budget]:
    """`--max-latency-ms` values: `X` (the first device) or `DEVICE=X`."""
    budgets: dict[str, Budget] = {}
    for value in values:
        device, equals, number = value.rpartition("=")
        if equals and not device:
            raise ConfigError(f"--max-latency-ms {value}: expected X or DEVICE=X")
        device = device or devices[0]
        if device in budgets:
            raise ConfigError(
                f"--max-latency-ms {value}: {device} already has a budget "
                f"({budgets[device].describe()})"
            )
        if device not in devices:
            raise ConfigError(f"--max-latency-ms {value}: {device!r} is not a --device")
        try:
            limit = float(number)
        except ValueError:
            raise ConfigError(f"--max-latency-ms {value}: expected milliseconds") from None
        budgets[device] = Budget.latency_ms(limit, device)
    return list(budgets.values())


def search_config(
    *,
    task: str = "mt",
    checkpoint: str,
    data: str | None = None,
    devices: Sequence[str] = ("onnxruntime-cpu",),
    predictors: Sequence[str] = (),
    objective: str | None = None,
    quality: str | None = None,
    limit: int | None = 200,
    beam: int = 1,
    threads: int = 2,
    workers: int = 1,
    max_latency_ms: Sequence[str] = (),
    max_params: int | None = None,
    max_memory_mib: float | None = None,
    memory_model: str | None = None,
    calibrate: int | None = None,
    algorithm: str = "nsga2",
    generations: int = 20,
    population: int | None = None,
    seed: int = 0,
    latency_confidence: float | None = DEFAULT_LATENCY_CONFIDENCE,
) -> SearchConfig:
    """The settings of `mos-search search`, checked, with the defaults that depend on options.

    Defaults: the objective and quality metric follow the task (mt: bleu-latency searched on
    validation loss; bert: perplexity-memory), the population the algorithm (nsga2 40, HAT's
    evolution 125). Raises ConfigError on a combination that does not fit the task.
    """
    if task not in TASKS:
        raise ConfigError(f"--task: expected one of {', '.join(TASKS)}, found {task!r}")
    bert = task == "bert"
    if objective is not None and objective != OBJECTIVES[task]:
        raise ConfigError(f"--objective {objective} is not an objective of --task {task}")
    quality = quality or QUALITY_METRICS[task][0]
    if bert and (max_latency_ms or predictors):
        raise ConfigError("--task bert searches memory: use --max-memory-mib, not latency")
    if memory_model is not None and (bert or max_memory_mib is None):
        raise ConfigError("--memory-model is for --task mt with --max-memory-mib")
    budgets = [] if bert else latency_budgets(max_latency_ms, devices)
    if max_memory_mib is not None and bert:
        budgets.append(Budget.memory_mib(max_memory_mib))
    elif max_memory_mib is not None:
        budgets.append(Budget.peak_memory_mib(max_memory_mib))
        memory_model = memory_model or str(shipped_memory_model(devices))
    if max_params is not None:
        budgets.append(Budget.params(max_params))
    return SearchConfig(
        task=task,
        algorithm=algorithm,
        generations=generations,
        population=population or ALGORITHM_POPULATION.get(algorithm, 40),
        seed=seed,
        quality=quality,
        devices=() if bert else tuple(devices),
        predictors=tuple(predictors),
        budgets=tuple(budgets),
        oracle=OracleSettings(checkpoint, data, limit, beam, threads, workers),
        latency_confidence=None if bert else latency_confidence,
        memory_model=memory_model,
        calibrate=calibrate,
    )


def shipped_memory_model(devices: Sequence[str]) -> Path:
    """The memory model shipped for onnxruntime-cpu, where the search measures on it; else a
    ConfigError asking for --memory-model."""
    from mos_search.costs.predictors import shipped_path

    path = shipped_path(MEMORY_DEVICE, "memory.json") if MEMORY_DEVICE in devices else None
    if path is None:
        raise ConfigError(
            f"--max-memory-mib: no memory model ships for {', '.join(devices)}; profile with "
            "`mos-search profile --memory`, fit `mos-search predictor memory`, give --memory-model"
        )
    return path
