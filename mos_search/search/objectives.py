"""Objectives of a search: oracle quality against predicted latency (translation) or memory (BERT).

`search_evaluator` wires a trained supernet (the oracle) and the cost objectives of the settings
into an `ArchEvaluator`: per-device latency predictors (translation), or the exact parameter
memory of each encoder (BERT). `search_task` is the whole `mos-search search` command:
search, then verification of the front, then the report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from latency.predictor import LatencyPredictor, PredictorError
from mos_search.arch import ArchBase
from mos_search.costs.identity import load_predictor
from mos_search.costs.predictors import predictor_path
from mos_search.errors import ConfigError
from mos_search.search.config import (
    MEMORY_COST,
    PEAK_MEMORY_COST,
    OracleSettings,
    SearchConfig,
    VerifySettings,
)
from mos_search.search.options import MEMORY_DEVICE
from mos_search.search.problem import ArchEvaluator
from mos_search.search.run import SearchResult, open_run, run_search
from mos_search.space import SearchSpace

Echo = Callable[[str], None]


def load_predictors(
    config: SearchConfig, space: SearchSpace, vocab_size: int, out: Path | None = None
) -> dict:
    """One predictor per device of `config` (the run's calibrated ones with --calibrate),
    checked against the space and the vocabulary."""
    predictors: dict[str, LatencyPredictor] = {}
    for i, device in enumerate(config.devices):
        path = device_predictor(config, i, out)
        if not path.is_file():
            raise PredictorError(
                f"no latency predictor for {device} at {path}: run `mos-search profile --device "
                f"{device}` and `mos-search predictor train`, then give --predictor"
            )
        predictor = load_predictor(path, space)  # the checkpoint's space, choices included
        measured_vocab = predictor.meta.get("vocab_size")
        if measured_vocab is not None and measured_vocab != vocab_size:
            raise PredictorError(
                f"{path} was trained on models with a {measured_vocab}-token vocabulary; the "
                f"checkpoint has {vocab_size}. Profile with --vocab-size {vocab_size} (or --ckpt)"
            )
        predictors[device] = predictor
    return predictors


def device_predictor(config: SearchConfig, index: int, out: Path | None = None) -> Path:
    """The predictor file of the `index`-th device: in a calibrated run (`out` given) the run's
    calibrated one, else the one given, else the shipped one."""
    device = config.devices[index]
    if config.calibrate and out is not None:
        from mos_search.search.calibration import calibrated_path

        return calibrated_path(out, device)
    return predictor_path(device, config.predictors[index] if config.predictors else None)


def latency_functions(
    predictors: dict[str, LatencyPredictor], space: SearchSpace
) -> dict[str, Callable[[ArchBase], float]]:
    """Per device, arch -> predicted milliseconds (the ensemble's geometric mean)."""
    return {
        device: (lambda arch, p=p: float(p.predict_ms(space.features(arch))[0]))
        for device, p in predictors.items()
    }


def latency_bounds(
    predictors: dict[str, LatencyPredictor], space: SearchSpace, confidence: float
) -> dict[str, Callable[[ArchBase], float]]:
    """Per device, arch -> milliseconds the measurement stays below with `confidence`."""
    return {
        device: (lambda arch, p=p: float(p.upper_ms(space.features(arch), confidence)[0]))
        for device, p in predictors.items()
    }


def peak_memory_bound(
    config: SearchConfig, space: SearchSpace, vocab_size: int
) -> Callable[[ArchBase], float]:
    """arch -> MiB its deployment's peak memory stays below with the search's confidence (the
    memory model's prediction where the search constrains means), checked against the space."""
    from latency.memory_model import MemoryModel
    from mos_search.costs.memory import translation_memory_terms

    model = MemoryModel.load(config.memory_model)
    measured_vocab = model.meta.get("vocab_size")
    if measured_vocab is not None and measured_vocab != vocab_size:
        raise ConfigError(
            f"{config.memory_model} was fitted on a {measured_vocab}-token vocabulary; the "
            f"checkpoint has {vocab_size}"
        )
    confidence = config.latency_confidence

    def bound(arch: ArchBase) -> float:
        terms = translation_memory_terms(arch, vocab_size, space.qkv_dim)
        if confidence is None:
            return model.predict_mib(terms)
        return model.upper_mib(terms, confidence)

    return bound


def search_oracle(settings: OracleSettings) -> Any:
    """The validation-slice oracle of a search (one thread per process with a worker pool, so
    parallel and sequential scoring compute the very same numbers)."""
    from mos_search.oracle.scoring import Oracle

    threads = 1 if settings.workers > 1 else settings.threads
    return Oracle(settings.checkpoint, settings.data, "valid", settings.limit, threads=threads)


def with_scoring_pool(
    evaluator: ArchEvaluator, oracle: Any, metric: str, beam: int, workers: int
) -> ArchEvaluator:
    """Give `evaluator` a pool of `workers` processes scoring each generation's new candidates
    at once (nothing changes with one worker)."""
    if workers <= 1:
        return evaluator
    from mos_search.oracle.pool import ScoringPool

    pool = ScoringPool(oracle.settings(), workers)
    evaluator.score_in_batches(
        lambda archs: oracle.score_many(archs, metric, beam, pool), pool.close
    )
    return evaluator


def search_evaluator(config: SearchConfig, out: Path) -> ArchEvaluator:
    """The evaluator of a search: oracle quality on the validation slice, the costs of
    `config.costs` (predicted latency per device, or exact parameter memory) and exact
    parameter counts, under `config.budgets`."""
    from mos_search.models.build import count_arch_parameters

    settings = _oracle_settings(config)
    oracle = search_oracle(settings)
    bert = config.task == "bert"
    if (oracle.task == "bert") != bert:
        kind = "a BERT" if oracle.task == "bert" else "a translation"
        raise ConfigError(
            f"{settings.checkpoint} is {kind} supernet: search it with --task "
            f"{'bert' if oracle.task == 'bert' else 'mt'}"
        )
    space, vocab = oracle.space, oracle.loaded.vocab_size
    if bert:
        from mos_search.models.bert import bert_parameter_bytes

        costs = {MEMORY_COST: lambda arch: bert_parameter_bytes(arch, vocab) / 2**20}
        bounds = {}
    else:
        predictors = load_predictors(config, space, vocab, out)
        costs = latency_functions(predictors, space)
        confidence = config.latency_confidence
        bounds = {} if confidence is None else latency_bounds(predictors, space, confidence)
        if config.memory_model is not None:
            bounds[PEAK_MEMORY_COST] = peak_memory_bound(config, space, vocab)
    beam = 1 if bert else settings.beam
    evaluator = ArchEvaluator(
        space,
        quality=lambda arch: oracle.score(arch, config.quality, beam),
        metric=config.quality,
        costs=costs,
        params=lambda arch: count_arch_parameters(space, arch, vocab),
        budgets=config.budgets,
        log_path=out / "evaluations.jsonl",
        bounds=bounds,
    )
    return with_scoring_pool(evaluator, oracle, config.quality, beam, settings.workers)


def _oracle_settings(config: SearchConfig) -> OracleSettings:
    if config.oracle is None:
        raise ConfigError("the search settings name no checkpoint to score with")
    return config.oracle


def search_task(
    config: SearchConfig,
    out: str | Path,
    resume: bool = False,
    verify: VerifySettings | None = None,
    report: bool = True,
    echo: Echo = print,
) -> SearchResult:
    """Search, then (unless interrupted) verify the front and write the report."""
    out, state = open_run(out, config, resume)
    if config.calibrate:
        from mos_search.search.calibration import calibrate_devices

        calibrate_devices(config, out, lambda i: device_predictor(config, i), echo)
    evaluator = search_evaluator(config, out)

    def on_generation(r: dict[str, Any]) -> None:
        best = "-" if r["best_quality"] is None else f"{r['best_quality']:.3f}"
        echo(
            f"gen {r['generation']:>3}/{config.generations}  best {config.quality} {best}  "
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
    if verify is not None and not verify_front_of(config, out, verify, echo):
        return result  # measurements pending elsewhere: the report waits for them
    if report:
        from mos_search.search.report import write_report

        echo(f"report: {write_report(out)}")
    return result


def verify_front_of(
    config: SearchConfig, out: Path, verify: VerifySettings, echo: Echo = print
) -> bool:
    """Measure and test-score the front of the finished search in `out` (verified.json); False
    when its measurements wait for offline bundles (`--verify-export-bundles`)."""
    from mos_search.costs.elsewhere import MeasurementsPending
    from mos_search.search.verify import verify_bert_front, verify_front

    settings = _oracle_settings(config)
    if config.task == "bert":
        rows = verify_bert_front(
            out, settings.checkpoint, settings.data, verify.test_limit, verify.max_archs
        )
        for row in rows:
            memory = row["memory"]
            echo(
                f"verified: test perplexity {row['test_perplexity']:.2f}  parameters "
                f"{memory['params_fp32_mib']:.1f} MiB fp32 / {memory['params_fp16_mib']:.1f} MiB "
                f"fp16  ONNX Runtime peak {memory['onnxruntime_peak_mib']:.1f} MiB at length "
                f"{memory['sequence_length']}"
            )
        return True
    drift = {}
    for i, device in enumerate(config.devices):
        path = device_predictor(config, i, out)
        meta = LatencyPredictor.load(path).meta
        drift[device] = (meta.get("reference_ms"), meta.get("drift_elasticity"))
    try:
        rows = verify_front(
            out,
            settings.checkpoint,
            settings.data,
            drift,
            verify.test_limit,
            verify.beam,
            verify.max_archs,
            verify.passes,
            lenpen=verify.lenpen,
            no_repeat_ngram_size=verify.no_repeat_ngram_size,
            elsewhere=verify.elsewhere,
            memory_device=MEMORY_DEVICE if config.memory_model is not None else None,
        )
    except MeasurementsPending as pending:
        echo(str(pending))
        return False
    for row in rows:
        lat = "  ".join(
            f"{d}: predicted {row['predicted_latency_ms'][d]:.1f} ms, measured "
            f"{row['measured_scaled_ms'][d]:.1f} ms [{row['measured_interval_ms'][d][0]:.1f}, "
            f"{row['measured_interval_ms'][d][1]:.1f}] ({row['latency_error_pct'][d]:+.1f}%)"
            for d in config.devices
        )
        if "measured_peak_memory_mib" in row:
            bound = row["predicted_peak_memory_mib"]
            lat += f"  peak memory {row['measured_peak_memory_mib']:.1f} MiB" + (
                "" if bound is None else f" (bound {bound:.1f} MiB)"
            )
        echo(f"verified: test BLEU {row['test_bleu']:.2f}  {lat}")
    _feed_back(config, out, echo)
    return True


def _feed_back(config: SearchConfig, out: Path, echo: Echo) -> None:
    """Verification measurements go back into each device's dataset (closing the loop)."""
    from devices import load_profile
    from mos_search.costs.predictors import append_verification

    for i, device in enumerate(config.devices):
        path = device_predictor(config, i, out)
        measured = out / f"measured_{load_profile(device).name}.jsonl"
        dataset, added = append_verification(path, measured, str(out))
        if dataset is None:
            echo(
                f"verification records kept in {measured} (the predictor's dataset is shipped "
                "data or not found); refit with `predictor update --dataset` to use them"
            )
        else:
            echo(
                f"{added} verification records appended to {dataset}; refit with "
                f"`mos-search predictor update --predictor {path}`"
            )
