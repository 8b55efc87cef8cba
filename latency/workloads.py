"""Workloads: what one timed run does on a device, written once against the device primitives.

Translation (HAT's measurement): a `source_len`-token source encoded once at batch 1, its
cross-attention keys/values repeated to `beam` rows, then `decoder_steps` incremental decoder steps
at batch `beam`, each feeding back its argmax and its grown self-attention cache.
BERT: one forward of `bert_batch` x `bert_seq_len` tokens.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from devices import Device, DeviceError, DeviceProfile, ModelBundle


def source_tokens(vocab_size: int, length: int, batch: int = 1, seed: int = 0) -> np.ndarray:
    """Fixed pseudo-random token ids in [4, vocab) (specials excluded), int64 (batch, length)."""
    rng = np.random.default_rng(seed)
    return rng.integers(4, vocab_size, size=(batch, length), dtype=np.int64)


def translation_workload(
    device: Device, bundle: ModelBundle, profile: DeviceProfile
) -> Callable[[], list[int]]:
    """A callable running encoder + cached decoder steps once; returns the greedy token ids."""
    if bundle.kind != "translation" or not bundle.past_shapes:
        raise DeviceError("translation workload needs a translation bundle with past_shapes")
    src = device.put(source_tokens(bundle.vocab_size, profile.source_len))
    start = device.put(np.full((profile.beam, 1), bundle.bos_id, dtype=np.int64))
    beam = profile.beam

    def run() -> list:
        key_mask, *cross = device.run("encoder", [src])
        key_mask = device.repeat_batch(key_mask, beam)
        cross = [device.repeat_batch(c, beam) for c in cross]
        past = [
            device.zeros((beam, heads, 0, dim))
            for heads, dim in bundle.past_shapes
            for _ in range(2)
        ]
        tokens, produced = start, []
        for _ in range(profile.decoder_steps):
            logits, *past = device.run("decoder_step", [tokens, key_mask, *cross, *past])
            tokens = device.argmax(logits)
            produced.append(tokens)
        return produced

    return run


def bert_workload(
    device: Device, bundle: ModelBundle, profile: DeviceProfile
) -> Callable[[], list]:
    """A callable running one encoder forward at the profile's batch and length."""
    if bundle.kind != "bert":
        raise DeviceError("BERT workload needs a BERT bundle")
    ids = device.put(source_tokens(bundle.vocab_size, profile.bert_seq_len, profile.bert_batch))
    return lambda: device.run("encoder", [ids])


def workload_for(device: Device, bundle: ModelBundle, profile: DeviceProfile) -> Callable:
    """The workload callable for the bundle's kind."""
    if bundle.kind == "translation":
        return translation_workload(device, bundle, profile)
    if bundle.kind == "bert":
        return bert_workload(device, bundle, profile)
    raise DeviceError(f"no workload for bundle kind {bundle.kind!r}")
