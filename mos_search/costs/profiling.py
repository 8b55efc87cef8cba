"""Latency profiling of a search space on a device: sample, extract, export, measure, append.

Latency depends on the architecture, not on weight values, so without a checkpoint each
architecture gets a freshly initialised standalone model (seeded); with one, its extracted weights.
Every measurement is timed interleaved with the reference workload (`reference_bundle`: the
space's smallest member); exported model folders are measured the same way (`exported_runs`) and
summarised over passes for their card (`latency_entry`).
"""

from __future__ import annotations

import contextlib
import random
import statistics
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from devices import Device, DeviceProfile, ModelBundle, load_profile, open_device
from latency.dataset import arch_key
from latency.profiler import ProfileRun, profile_archs
from latency.protocol import Measurement, Run, median_interval
from latency.workloads import workload_for
from mos_search.arch import Arch
from mos_search.costs.memory import translation_memory_terms
from mos_search.errors import ConfigError
from mos_search.files import check_output_file
from mos_search.models.onnx import DecoderStepGraph, EncoderGraph, GraphShapes, export_onnx
from mos_search.models.transformer import TranslationTransformer, count_parameters
from mos_search.space import SearchSpace, load_space


def default_dataset_path(profile: str) -> Path:
    """Where `mos-search profile` writes a device's dataset without `--out` (current folder)."""
    return Path("runs") / "profile" / profile / "latency.jsonl"


def sample_archs(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """Largest, smallest, then distinct uniform samples (fixed seed), `n` in all."""
    rng = random.Random(seed)
    archs = [space.largest(), space.smallest()][:n]
    seen = set(archs)
    attempts = 0
    while len(archs) < n and attempts < 100 * n:
        arch = space.sample(rng)
        attempts += 1
        if arch not in seen:
            seen.add(arch)
            archs.append(arch)
    return archs


SPREAD_POOL = 4000  # uniform samples the evenly spread architectures are chosen from


def spread_by_size(space: SearchSpace, count: Callable[[Any], int], n: int, seed: int) -> list[Any]:
    """`n` distinct architectures spread evenly over the parameter range: the smallest, the
    largest, and the pool members whose parameter counts are nearest to `n - 2` counts evenly
    spaced between theirs (uniform samples cluster at middle sizes; these do not)."""
    if n < 3:
        raise ConfigError(f"--archs: expected at least 3 architectures, found {n}")
    rng = random.Random(seed)
    pool = sorted({space.sample(rng) for _ in range(SPREAD_POOL)}, key=lambda a: str(a.to_dict()))
    chosen = [space.smallest(), space.largest()]
    taken = set(chosen)
    sizes = {arch: count(arch) for arch in pool}
    low, high = count(space.smallest()), count(space.largest())
    for target in np.linspace(low, high, n)[1:-1]:
        free = [arch for arch in pool if arch not in taken]
        if not free:
            break
        nearest = min(free, key=lambda a: abs(sizes[a] - target))
        taken.add(nearest)
        chosen.append(nearest)
    return sorted(chosen, key=count)


def translation_bundle(model: TranslationTransformer, needs: str, work_dir: Path) -> ModelBundle:
    """The encoder and decoder-step graphs of `model`, as ONNX files or PyTorch modules."""
    shapes = GraphShapes.of(model)
    bundle = ModelBundle(
        kind="translation",
        vocab_size=model.vocab_size,
        past_shapes=shapes.past_shapes,
    )
    if needs == "onnx":
        encoder, decoder = export_onnx(model, work_dir)
        bundle.onnx = {"encoder": encoder, "decoder_step": decoder}
    else:
        bundle.torch = {
            "encoder": EncoderGraph(model).eval(),
            "decoder_step": DecoderStepGraph(model).eval(),
        }
    return bundle


class ArchModels:
    """Standalone models for architectures: extracted from a checkpoint, or freshly initialised."""

    def __init__(self, space: SearchSpace, vocab_size: int) -> None:
        space.require_task(
            "translation", "latency profiling (BERT searches memory: search --task bert)"
        )
        self.space, self.vocab_size, self.loaded = space, vocab_size, None

    @classmethod
    def fresh(cls, space: SearchSpace, vocab_size: int) -> ArchModels:
        """Freshly initialised models; the largest member's weights must fit in memory now."""
        from mos_search.models.build import count_arch_parameters
        from mos_search.models.size import INFERENCE_BYTES_PER_PARAMETER, check_fits

        check_fits(
            space,
            lambda s: count_arch_parameters(s, s.largest(), vocab_size),
            INFERENCE_BYTES_PER_PARAMETER,
            "profiling its largest architecture",
        )
        return cls(space, vocab_size)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path) -> ArchModels:
        """Sub-networks extracted from a trained supernet (its space and vocabulary)."""
        from mos_search.models.build import load_model

        loaded = load_model(checkpoint)
        models = cls(loaded.space, loaded.vocab_size)
        models.loaded = loaded
        return models

    def model(self, arch: Arch) -> TranslationTransformer:
        """The standalone model of `arch`, in eval mode."""
        if self.loaded is not None:
            return self.loaded.sub_network(arch)
        torch.manual_seed(0)
        return TranslationTransformer(
            arch,
            self.vocab_size,
            self.space.qkv_dim,
            dropout=0.0,
            share_embeddings=self.space.share_embeddings,
        ).eval()


def reference_bundle(
    space: SearchSpace, vocab_size: int, needs: str, work_dir: Path
) -> ModelBundle:
    """The reference workload timed between measured runs: the space's smallest member,
    freshly initialised (seed 0; latency does not depend on weight values)."""
    model = ArchModels(space, vocab_size).model(space.smallest())
    return translation_bundle(model, needs, work_dir)


def run_profile(
    device_profile: str,
    space_name: str,
    n: int,
    seed: int = 0,
    vocab_size: int = 8000,
    checkpoint: str | None = None,
    dataset: str | None = None,
    reference: bool = True,
    progress: bool = True,
    near_budget_ms: float | None = None,
    predictor: str | None = None,
) -> ProfileRun:
    """Measure `n` architectures of a space on a device and append them to its dataset (on an
    SSH target: `profile_plan`, then `costs.elsewhere.measure_on_remote`).

    With `near_budget_ms` (and the `predictor` file), the `n` are chosen actively: among
    `ACTIVE_POOL` sampled members, those whose predicted 90% interval contains the budget,
    closest prediction first (where the predictor is least sure which side they fall on).
    """
    plan = profile_plan(
        device_profile,
        space_name,
        n,
        seed,
        vocab_size,
        checkpoint,
        dataset,
        near_budget_ms,
        predictor,
    )
    return measure_archs(plan.profile, plan.archs, plan.models, plan.dataset, reference, progress)


@dataclass(frozen=True)
class ProfilePlan:
    """What a `profile` command measures: on which device profile, which architectures, their
    models, and the dataset the records go to."""

    profile: DeviceProfile
    archs: list[Arch]
    models: ArchModels
    dataset: Path


def profile_plan(
    device_profile: str,
    space_name: str,
    n: int,
    seed: int = 0,
    vocab_size: int = 8000,
    checkpoint: str | None = None,
    dataset: str | None = None,
    near_budget_ms: float | None = None,
    predictor: str | None = None,
) -> ProfilePlan:
    """What `run_profile` measures, each part checked (see its arguments)."""
    profile: DeviceProfile = load_profile(device_profile)
    dataset_path = Path(dataset or default_dataset_path(profile.name))
    check_output_file(dataset_path)  # appended to: checked before any model is built or timed
    if checkpoint:
        models = ArchModels.from_checkpoint(checkpoint)
    else:
        models = ArchModels.fresh(load_space(space_name), vocab_size)
    if (near_budget_ms is None) != (predictor is None):
        raise ConfigError("--near-budget-ms and --predictor go together (active profiling)")
    if dataset_path.is_file():  # appending another space's records would mix two feature sets
        from latency.dataset import read_records
        from mos_search.costs.identity import check_dataset_space

        check_dataset_space(read_records(dataset_path), models.space, dataset_path)
    if near_budget_ms is None:
        archs = sample_archs(models.space, n, seed)
    else:
        from latency.dataset import arch_key, measured_keys

        done = measured_keys(dataset_path, profile.digest())
        candidates = straddling_archs(models.space, predictor, near_budget_ms, n + len(done), seed)
        archs = [a for a in candidates if arch_key(a.to_dict()) not in done][:n]
    return ProfilePlan(profile, archs, models, dataset_path)


ACTIVE_POOL = 4096  # members sampled when choosing what to measure near a budget


def straddling_archs(
    space: SearchSpace, predictor_file: str, budget_ms: float, n: int, seed: int = 0
) -> list[Arch]:
    """Up to `n` distinct members whose predicted 90% interval contains `budget_ms`, the ones
    predicted closest to it first (active profiling: measure where a budget is decided)."""
    from mos_search.costs.identity import load_predictor

    predictor = load_predictor(predictor_file, space)  # of this space, choices included
    pool = sample_archs(space, ACTIVE_POOL, seed)  # distinct members
    features = [space.features(a) for a in pool]
    mean = predictor.predict_ms(features)
    low, high = predictor.interval_ms(features, 0.9)
    inside = [i for i in range(len(pool)) if low[i] <= budget_ms <= high[i]]
    inside.sort(key=lambda i: abs(mean[i] - budget_ms))
    return [pool[i] for i in inside[:n]]


def measure_archs(
    profile: DeviceProfile,
    archs: list[Arch],
    models: ArchModels,
    dataset: str | Path,
    reference: bool = True,
    progress: bool = True,
    passes: int | None = None,
    memory: bool = False,
) -> ProfileRun:
    """Measure `archs` (those not yet in `dataset`) on the profile's device; one record each,
    or with `passes` one per arch and pass, pass after pass (see `profile_archs`). With `memory`,
    each record also gets the model's peak memory on the device (`latency.memory`; a DeviceError
    before anything is measured where it cannot be measured)."""
    space = models.space
    memory_mib = None
    if memory:
        from latency.memory import bundle_peak_memory, check_measurable

        check_measurable(profile)

        def memory_mib(bundle: ModelBundle) -> float:
            return bundle_peak_memory(bundle, profile)["peak_inference_mib"]

    def memory_fields(arch_dict: dict) -> dict:
        arch = space.arch_from_dict(arch_dict)
        terms = translation_memory_terms(arch, models.vocab_size, space.qkv_dim)
        return {"memory_terms": terms, "vocab_size": models.vocab_size}

    device: Device = open_device(profile)
    bundles: dict[str, ModelBundle] = {}  # built once, measured in every pass
    with tempfile.TemporaryDirectory(prefix="mos-profile-") as tmp:
        work = Path(tmp)

        def make_bundle(arch_dict: dict) -> ModelBundle:
            key = arch_key(arch_dict)
            if key not in bundles:
                arch = space.arch_from_dict(arch_dict)
                folder = work / ("graphs" if passes is None else f"graphs-{len(bundles)}")
                bundle = translation_bundle(models.model(arch), device.needs, folder)
                if passes is None:  # profiling: each arch once, nothing to keep
                    return bundle
                bundles[key] = bundle
            return bundles[key]

        ref_bundle = None
        if reference:  # the space's smallest member, timed between the measured runs
            ref_bundle = reference_bundle(space, models.vocab_size, device.needs, work / "ref")
        return profile_archs(
            [a.to_dict() for a in archs],
            make_bundle,
            features=lambda a: space.features(space.arch_from_dict(a)),
            params=lambda a: count_parameters(
                space.arch_from_dict(a), models.vocab_size, space.qkv_dim, space.share_embeddings
            ),
            device=device,
            profile=profile,
            dataset=dataset,
            reference=ref_bundle,
            progress=progress,
            passes=passes,
            extra={"share_embeddings": space.share_embeddings},  # the params' table count
            memory_mib=memory_mib,
            arch_fields=None if memory_mib is None else memory_fields,
        )


def folder_bundle(folder: Path, past_shapes: list, vocab_size: int) -> ModelBundle:
    """The exported graphs of a model folder (`encoder.onnx`, `decoder_step.onnx`) as a bundle."""
    return ModelBundle(
        kind="translation",
        onnx={"encoder": folder / "encoder.onnx", "decoder_step": folder / "decoder_step.onnx"},
        past_shapes=[tuple(p) for p in past_shapes],
        vocab_size=vocab_size,
    )


@contextlib.contextmanager
def exported_runs(
    profile: DeviceProfile, bundles: list[ModelBundle], space: SearchSpace, vocab_size: int
) -> Iterator[tuple[list[Run], Run]]:
    """A device loaded with each (ONNX) bundle and one with the space's reference workload, as
    (runs, reference) for `latency.protocol.measure`/`measure_pair`; all closed on exit."""
    devices = [open_device(profile) for _ in range(len(bundles) + 1)]
    if devices[0].needs != "onnx":
        raise ConfigError(
            f"device {profile.name} runs PyTorch modules; exported models run on ONNX devices"
        )
    try:
        with tempfile.TemporaryDirectory(prefix="mos-reference-") as tmp:
            ref_bundle = reference_bundle(space, vocab_size, "onnx", Path(tmp))
            runs = []
            for device, bundle in zip(devices, [*bundles, ref_bundle]):
                device.load(bundle)
                runs.append((device, workload_for(device, bundle, profile)))
            yield runs[:-1], runs[-1]
    finally:
        for device in devices:
            device.close()


def latency_entry(profile: DeviceProfile, passes: list[Measurement]) -> dict[str, Any]:
    """Latency of one model measured in one or more passes (ms), as a model card holds it.

    `latency_ms` is the median of the pass medians. With 2+ passes, [`low_ms`, `high_ms`] is the
    order-statistic interval of the median over the pass medians (`latency.protocol`; with 3
    passes: their min and max, coverage 1 - 2 * 0.5**3 = 75%), so it holds the drift between
    passes; with one pass, the interval over its repeats. `interval_coverage` says which
    probability; `passes_ms` lists the pass medians, `reference_ms` is their references' median.
    """
    medians = [m.seconds * 1000 for m in passes]
    if len(passes) > 1:
        interval = median_interval(medians, profile.confidence)
        low, high, coverage = interval.low, interval.high, interval.coverage
    else:
        only = passes[0]
        low, high, coverage = only.low_seconds * 1000, only.high_seconds * 1000, only.coverage
    references = [m.reference_seconds * 1000 for m in passes if m.reference_seconds is not None]
    return {
        "profile": profile.name,
        "latency_ms": statistics.median(medians),
        "low_ms": low,
        "high_ms": high,
        "interval_coverage": coverage,
        "interval_of": "pass medians" if len(passes) > 1 else "repeats",
        "spread": max(m.spread for m in passes),
        "flagged": any(m.flagged for m in passes),
        "reference_ms": statistics.median(references) if references else None,
        "passes": len(passes),
        "passes_ms": medians,
    }
