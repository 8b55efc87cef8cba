"""Latency profiling of a search space on a device: sample, extract, export, measure, append.

Latency depends on the architecture, not on weight values, so without a checkpoint each
architecture gets a freshly initialised standalone model (seeded); with one, its extracted weights.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import torch

from devices import Device, DeviceProfile, ModelBundle, load_profile, open_device
from latency.profiler import ProfileRun, profile_archs
from mos_search.arch import Arch
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


def translation_bundle(model: TranslationTransformer, needs: str, work_dir: Path) -> ModelBundle:
    """The encoder and decoder-step graphs of `model`, as ONNX files or PyTorch modules."""
    shapes = GraphShapes.of(model)
    bundle = ModelBundle(
        kind="translation",
        vocab_size=model.vocab_size,
        past_shapes=list(zip(shapes.self_heads, shapes.self_head_dims)),
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
        return TranslationTransformer(arch, self.vocab_size, self.space.qkv_dim, dropout=0.0).eval()


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
) -> ProfileRun:
    """Measure `n` architectures of a space on a device and append them to its dataset."""
    profile: DeviceProfile = load_profile(device_profile)
    if checkpoint:
        models = ArchModels.from_checkpoint(checkpoint)
    else:
        models = ArchModels(load_space(space_name), vocab_size)
    dataset_path = Path(dataset or default_dataset_path(profile.name))
    archs = sample_archs(models.space, n, seed)
    return measure_archs(profile, archs, models, dataset_path, reference, progress)


def measure_archs(
    profile: DeviceProfile,
    archs: list[Arch],
    models: ArchModels,
    dataset: str | Path,
    reference: bool = True,
    progress: bool = True,
) -> ProfileRun:
    """Measure `archs` (those not yet in `dataset`) on the profile's device; one record each."""
    space = models.space
    device: Device = open_device(profile)
    with tempfile.TemporaryDirectory(prefix="mos-profile-") as tmp:
        work = Path(tmp)

        def make_bundle(arch_dict: dict) -> ModelBundle:
            arch = space.arch_from_dict(arch_dict)
            return translation_bundle(models.model(arch), device.needs, work / "graphs")

        ref_bundle = None
        if reference:  # the space's smallest member, timed between the measured runs
            ref_bundle = translation_bundle(
                models.model(space.smallest()), device.needs, work / "reference"
            )
        return profile_archs(
            [a.to_dict() for a in archs],
            make_bundle,
            features=lambda a: space.features(space.arch_from_dict(a)),
            params=lambda a: count_parameters(
                space.arch_from_dict(a), models.vocab_size, space.qkv_dim
            ),
            device=device,
            profile=profile,
            dataset=dataset,
            reference=ref_bundle,
            progress=progress,
        )
