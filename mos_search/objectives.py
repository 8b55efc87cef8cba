"""Objectives of a search: oracle quality against predicted latency (translation) or memory (BERT).

`translation_evaluator` wires a trained supernet (the oracle) and per-device latency predictors
into an `ArchEvaluator`; `bert_evaluator` wires a masked-LM supernet's perplexity and the exact
parameter memory of each encoder. `search_task` is the whole `mos-search search` command:
search, then verification of the front, then the report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from latency.predictor import LatencyPredictor, PredictorError
from mos_search.errors import ConfigError
from mos_search.problem import MEMORY_COST, ArchEvaluator, Budget
from mos_search.search import SearchConfig, SearchResult, open_run, run_search
from mos_search.space import ArchBase, SearchSpace


def default_predictor_path(device: str) -> Path:
    """Where `mos-search predictor train` writes a device's predictor by default."""
    return Path("devices") / device / "predictor.json"


def load_predictors(
    devices: tuple[str, ...], paths: tuple[str, ...], space: SearchSpace, vocab_size: int
) -> dict[str, LatencyPredictor]:
    """One predictor per device, checked against the space and the model's vocabulary."""
    if paths and len(paths) != len(devices):
        raise ConfigError(f"{len(paths)} --predictor files for {len(devices)} --device names")
    predictors = {}
    for i, device in enumerate(devices):
        path = Path(paths[i]) if paths else default_predictor_path(device)
        if not path.is_file():
            raise PredictorError(
                f"no latency predictor for {device} at {path}: run `mos-search profile --device "
                f"{device}` and `mos-search predictor train`, or give --predictor"
            )
        predictor = LatencyPredictor.load(path, list(space.feature_names), space.name)
        measured_vocab = predictor.meta.get("vocab_size")
        if measured_vocab is not None and measured_vocab != vocab_size:
            raise PredictorError(
                f"{path} was trained on models with a {measured_vocab}-token vocabulary; the "
                f"checkpoint has {vocab_size}. Profile with --vocab-size {vocab_size} (or --ckpt)"
            )
        predictors[device] = predictor
    return predictors


def latency_functions(
    predictors: dict[str, LatencyPredictor], space: SearchSpace
) -> dict[str, Callable[[ArchBase], float]]:
    """Per device, arch -> predicted milliseconds."""
    return {
        device: (lambda arch, p=p: float(p.predict_ms(space.features(arch))[0]))
        for device, p in predictors.items()
    }


def search_oracle(extra: dict[str, Any]) -> Any:
    """The validation-slice oracle of a search (one thread per process with a worker pool, so
    parallel and sequential scoring compute the very same numbers)."""
    from mos_search.oracle import Oracle

    workers = int(extra.get("workers", 1))
    return Oracle(
        extra["checkpoint"],
        extra.get("data"),
        "valid",
        extra.get("limit"),
        threads=1 if workers > 1 else extra.get("threads", 1),
    )


def with_scoring_pool(
    evaluator: ArchEvaluator, oracle: Any, metric: str, beam: int, workers: int
) -> ArchEvaluator:
    """Give `evaluator` a pool of `workers` processes scoring each generation's new candidates
    at once (nothing changes with one worker)."""
    if workers <= 1:
        return evaluator
    from mos_search.oracle import ScoringPool

    pool = ScoringPool(oracle.settings(), workers)
    evaluator.score_in_batches(
        lambda archs: oracle.score_many(archs, metric, beam, pool), pool.close
    )
    return evaluator


def translation_evaluator(config: SearchConfig, out: Path) -> ArchEvaluator:
    """Oracle on the validation slice, predictors per device, exact parameter counts."""
    from mos_search.models import count_arch_parameters

    extra = config.extra
    oracle = search_oracle(extra)
    if oracle.task == "bert":
        raise ConfigError(f"{extra['checkpoint']} is a BERT supernet: search it with --task bert")
    space, vocab = oracle.space, oracle.loaded.vocab_size
    predictors = load_predictors(config.devices, tuple(extra.get("predictors", ())), space, vocab)
    beam = extra.get("beam", 1)
    evaluator = ArchEvaluator(
        space,
        quality=lambda arch: oracle.score(arch, config.metric, beam),
        metric=config.metric,
        latency=latency_functions(predictors, space),
        params=lambda arch: count_arch_parameters(space, arch, vocab),
        budget=Budget(dict(config.max_latency_ms), config.max_params),
        log_path=out / "evaluations.jsonl",
    )
    return with_scoring_pool(evaluator, oracle, config.metric, beam, extra.get("workers", 1))


def bert_evaluator(config: SearchConfig, out: Path) -> ArchEvaluator:
    """Masked-LM perplexity on the validation slice, parameter memory (MiB, fp32) of the encoder."""
    from mos_search.bert import bert_parameter_bytes
    from mos_search.models import count_arch_parameters

    extra = config.extra
    oracle = search_oracle(extra)
    if oracle.task != "bert":
        raise ConfigError(
            f"{extra['checkpoint']} is a translation supernet; --task bert needs BERT"
        )
    space, vocab = oracle.space, oracle.loaded.vocab_size
    evaluator = ArchEvaluator(
        space,
        quality=lambda arch: oracle.score(arch, config.metric),
        metric=config.metric,
        latency={MEMORY_COST: lambda arch: bert_parameter_bytes(arch, vocab) / 2**20},
        params=lambda arch: count_arch_parameters(space, arch, vocab),
        budget=Budget(dict(config.max_latency_ms), config.max_params),
        log_path=out / "evaluations.jsonl",
        cost_key="memory_mib",
    )
    return with_scoring_pool(evaluator, oracle, config.metric, 1, extra.get("workers", 1))


def latency_budgets(values: tuple[str, ...], devices: tuple[str, ...]) -> dict[str, float]:
    """`--max-latency-ms` values: `X` (the first device) or `DEVICE=X`."""
    budgets: dict[str, float] = {}
    for value in values:
        device, _, number = value.rpartition("=")
        device = device or devices[0]
        if device not in devices:
            raise ConfigError(f"--max-latency-ms {value}: {device!r} is not a --device")
        try:
            budgets[device] = float(number)
        except ValueError:
            raise ConfigError(f"--max-latency-ms {value}: expected milliseconds") from None
        if budgets[device] <= 0:
            raise ConfigError(f"--max-latency-ms {value}: must be positive")
    return budgets


def search_task(
    config: SearchConfig,
    out: str | Path,
    resume: bool = False,
    verify: dict[str, Any] | None = None,
    report: bool = True,
    echo: Callable[[str], None] = print,
) -> SearchResult:
    """Search, then (unless interrupted) verify the front and write the report."""
    out, state = open_run(out, config, resume)
    bert = config.extra.get("task") == "bert"
    evaluator = bert_evaluator(config, out) if bert else translation_evaluator(config, out)

    def on_generation(r: dict[str, Any]) -> None:
        best = "-" if r["best_quality"] is None else f"{r['best_quality']:.3f}"
        echo(
            f"gen {r['generation']:>3}/{config.generations}  best {config.metric} {best}  "
            f"HV {r['hypervolume']:.4f}  front {r['front_size']:>3}  distinct "
            f"{r['distinct']}/{r['population']}  oracle calls {r['oracle_calls']}  "
            f"cache hits {r['cache_hits']}  {r['seconds']:.1f}s"
        )

    try:
        result = run_search(config, evaluator, out, state, on_generation)
    finally:
        evaluator.close()
    if result.interrupted:
        echo(f"stopped after generation {result.generations_done}; add --resume to continue")
        return result
    echo(f"front: {len(result.front)} architectures -> {out / 'front.json'}")
    if verify is not None and bert:
        from mos_search.verify import verify_bert_front

        verify = {k: v for k, v in verify.items() if k != "beam"}
        for row in verify_bert_front(
            out, config.extra["checkpoint"], config.extra.get("data"), **verify
        ):
            memory = row["memory"]
            echo(
                f"verified: test perplexity {row['test_perplexity']:.2f}  parameters "
                f"{memory['params_fp32_mib']:.1f} MiB fp32 / {memory['params_fp16_mib']:.1f} MiB "
                f"fp16  ONNX Runtime peak {memory['onnxruntime_peak_mib']:.1f} MiB at length "
                f"{memory['sequence_length']}"
            )
    elif verify is not None:
        from mos_search.verify import verify_front

        drift = {}
        for i, device in enumerate(config.devices):
            path = _predictor_path(config, i)
            meta = LatencyPredictor.load(path or default_predictor_path(device)).meta
            drift[device] = (meta.get("reference_ms"), meta.get("drift_elasticity"))
        rows = verify_front(
            out, config.extra["checkpoint"], config.extra.get("data"), drift, **verify
        )
        for row in rows:
            lat = "  ".join(
                f"{d}: predicted {row['predicted_latency_ms'][d]:.1f} ms, measured "
                f"{row['measured_scaled_ms'][d]:.1f} ms ({row['latency_error_pct'][d]:+.1f}%)"
                for d in config.devices
            )
            echo(f"verified: test BLEU {row['test_bleu']:.2f}  {lat}")
    if report:
        from mos_search.report import write_report

        echo(f"report: {write_report(out)}")
    return result


def _predictor_path(config: SearchConfig, index: int) -> str | None:
    paths = config.extra.get("predictors") or []
    return paths[index] if index < len(paths) else None
