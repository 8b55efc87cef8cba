"""Export one sub-network for deployment: ONNX graphs, tokenizer, and a model card with checks.

`export_model` extracts the architecture from a checkpoint, writes `encoder.onnx` and
`decoder_step.onnx` (opset 17, checked by `onnx.checker`), copies the SentencePiece model, then
checks the ONNX files against PyTorch (largest output difference, identical greedy tokens),
scores both on the test split with sacreBLEU, measures latency on the requested devices (3 passes,
each interleaved with the reference workload: median, interval, spread, flag, reference) and writes
everything into `card.json` with the sha256 of every file. `--quantize int8` adds an `int8/`
model folder (ONNX Runtime dynamic quantization) with its BLEU change and its speed-up, int8 and
fp32 timed alternately run by run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mos_search.constants import BOS_ID, EOS_ID
from mos_search.errors import ConfigError
from mos_search.files import sha256_file, staged_output_dir, write_json_atomic

if TYPE_CHECKING:
    from latency.ssh import RemoteOptions

PARITY_SENTENCES = 20
BERT_PARITY_TOLERANCE = 1e-3  # float32 ONNX Runtime vs PyTorch: differences are ~1e-6


def card_checkpoint(checkpoint: str | Path, model_dir: str | Path) -> str:
    """The checkpoint as a card names it, so that the card travels: its path relative to the
    model folder when the two share a folder below the filesystem's root, else only its run's
    name and its own (`RUN/checkpoints/step_N`); `checkpoint_sha256` identifies the weights."""
    ckpt, model = Path(checkpoint).resolve(), Path(model_dir).resolve()
    if Path(os.path.commonpath([ckpt, model])) != Path(ckpt.anchor):
        return Path(os.path.relpath(ckpt, model)).as_posix()
    return "/".join(ckpt.parts[-3:] if ckpt.parent.name == "checkpoints" else ckpt.parts[-1:])


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("mos-search", "torch", "onnx", "onnxruntime", "sentencepiece", "sacrebleu"):
        with contextlib.suppress(PackageNotFoundError):
            out[package] = version(package)
    return out


def parity(model: Any, translator: Any, sources: list[list[int]]) -> dict[str, Any]:
    """ONNX Runtime vs PyTorch on real sources: encoder and per-step logits, greedy tokens."""
    import torch

    from mos_search.data.batches import pad
    from mos_search.models.onnx import EncoderGraph
    from mos_search.oracle.beam import greedy_search
    from mos_search.oracle.decode import CachedStepper

    src = pad([np.array([*s, EOS_ID]) for s in sources]).numpy()
    with torch.no_grad():
        torch_encoder = [t.numpy() for t in EncoderGraph(model)(torch.from_numpy(src))]
    onnx_encoder = translator.stepper.encoder.run(None, {"src_tokens": src})
    encoder_diff = max(
        float(np.abs(a.astype(np.float32) - b.astype(np.float32)).max())
        for a, b in zip(torch_encoder, onnx_encoder)
    )
    torch_ids = greedy_search(CachedStepper(model), src)
    onnx_ids = greedy_search(translator.stepper, src)
    logits_diff = _teacher_forced_logits_diff(model, translator, src, torch_ids)
    return {
        "sentences": len(sources),
        "encoder_max_abs_diff": encoder_diff,
        "decoder_logits_max_abs_diff": logits_diff,
        "greedy_tokens_identical": torch_ids == onnx_ids,
        "greedy_sentences_differing": sum(a != b for a, b in zip(torch_ids, onnx_ids)),
    }


def _teacher_forced_logits_diff(model: Any, translator: Any, src: np.ndarray, ids: list) -> float:
    """Largest logit difference over the steps of PyTorch's greedy output, fed to both."""
    from mos_search.oracle.decode import CachedStepper

    steps = min(len(h) for h in ids)
    torch_stepper, onnx_stepper = CachedStepper(model), translator.stepper
    t_state, o_state = torch_stepper.start(src), onnx_stepper.start(src)
    prefix = np.full((src.shape[0], 1), BOS_ID, dtype=np.int64)
    worst = 0.0
    for t in range(max(steps, 1)):
        t_logits, t_state = torch_stepper.step(prefix, t_state)
        o_logits, o_state = onnx_stepper.step(prefix, o_state)
        worst = max(worst, float(np.abs(t_logits - o_logits).max()))
        if t < steps:
            prefix = np.concatenate([prefix, np.array([[h[t]] for h in ids])], axis=1)
    return worst


def quantize_int8(model_dir: Path) -> Path:
    """ONNX Runtime dynamic int8 quantization of both graphs into `model_dir/int8/`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = model_dir / "int8"
    out.mkdir(exist_ok=True)
    for name in ("encoder.onnx", "decoder_step.onnx"):
        quantize_dynamic(str(model_dir / name), str(out / name), weight_type=QuantType.QInt8)
    shutil.copy(model_dir / "spm.model", out / "spm.model")
    return out


def export_model(
    checkpoint: str,
    arch_dict: dict[str, Any],
    out: str | Path,
    data: str | None = None,
    devices: tuple[str, ...] = ("onnxruntime-cpu",),
    test_limit: int | None = 300,
    beam: int = 5,
    quantize: str | None = None,
    echo: Callable[[str], None] = print,
    *,
    lenpen: float = 1.0,
    no_repeat_ngram_size: int = 0,
    remote: RemoteOptions | None = None,
) -> dict[str, Any]:
    """Write a translation model folder and its card; returns the card. Test BLEU (PyTorch,
    ONNX Runtime, int8) is decoded with `beam`, `lenpen` and `no_repeat_ngram_size`; latency
    is measured here, or on the SSH target `remote`."""
    from mos_search.costs.model_latency import measure_model_latency
    from mos_search.costs.profiling import folder_bundle
    from mos_search.deploy.translate import OnnxTranslator
    from mos_search.models.onnx import OPSET, GraphShapes
    from mos_search.models.transformer import count_parameters
    from mos_search.oracle.scoring import Oracle

    if quantize not in (None, "int8"):
        raise ConfigError(f"--quantize: expected int8, found {quantize!r}")
    out = Path(out)
    oracle = Oracle(checkpoint, data, "test", test_limit)
    space = oracle.space
    arch = space.arch_from_dict(arch_dict)
    model = oracle.loaded.sub_network(arch)
    echo(f"export: {arch.to_json()}")
    _write_translation_files(model, arch.to_json(), oracle.tokenizer.path, out)
    sources = [list(s[:-1]) for s in oracle.data.sources]
    translator = OnnxTranslator(out)
    checks = parity(model, translator, sources[:PARITY_SENTENCES])
    echo(
        f"parity: encoder max |diff| {checks['encoder_max_abs_diff']:.2e}, logits "
        f"{checks['decoder_logits_max_abs_diff']:.2e}, greedy identical "
        f"{checks['greedy_tokens_identical']}"
    )
    echo(f"scoring {len(sources)} test sentences, beam {beam} (PyTorch, then ONNX Runtime)")
    decoding = {"beam": beam, "lenpen": lenpen, "no_repeat_ngram_size": no_repeat_ngram_size}
    bleu = {
        "split": "test",
        "sentences": len(sources),
        **decoding,
        "pytorch": oracle.bleu(arch, **decoding).score,
        **_onnx_bleu(translator, sources, oracle.data.references, **decoding),
    }
    shapes = GraphShapes.of(model)
    bundle = folder_bundle(out, shapes.past_shapes, shapes.vocab_size)
    echo(f"measuring on {', '.join(devices)}" + (f" on {remote.target}" if remote else ""))
    latency = {d: measure_model_latency(d, bundle, arch, space, remote=remote) for d in devices}
    card: dict[str, Any] = {
        "format": "mos-search-model/1",
        "task": "translation",
        "arch": arch.to_dict(),
        "space": space.name,
        "params": count_parameters(arch, shapes.vocab_size, space.qkv_dim, space.share_embeddings),
        "vocab_size": shapes.vocab_size,
        "opset": OPSET,
        "checkpoint": card_checkpoint(oracle.checkpoint, out),
        "checkpoint_sha256": oracle.loaded.digest,
        "bleu": bleu,
        "parity": checks,
        "latency": latency,
        "versions": _versions(),
    }
    if quantize == "int8":
        echo("quantizing to int8 (dynamic) and re-scoring")
        references, fp32_bleu = oracle.data.references, bleu["onnxruntime"]
        card["int8"] = _int8_section(
            out, sources, references, decoding, fp32_bleu, latency, shapes, space
        )
    names = ("encoder.onnx", "decoder_step.onnx", "spm.model", "arch.json")
    card["files"] = {n: sha256_file(out / n) for n in names}
    write_json_atomic(out / "card.json", card)
    return card


def _write_translation_files(model: Any, arch_json: str, tokenizer: Path, out: Path) -> None:
    """Both ONNX graphs (checked by `onnx.checker`), the tokenizer and `arch.json`."""
    import onnx

    from mos_search.models.onnx import export_onnx

    out.mkdir(parents=True, exist_ok=True)
    export_onnx(model, out)
    for name in ("encoder.onnx", "decoder_step.onnx"):
        onnx.checker.check_model(str(out / name))
    shutil.copy(tokenizer, out / "spm.model")
    (out / "arch.json").write_text(arch_json + "\n")


def _onnx_bleu(
    translator: Any, sources: list[list[int]], references: list[str], **decoding: Any
) -> dict[str, Any]:
    """sacreBLEU of the exported model's translations (ONNX Runtime), with its signature;
    `decoding`: beam, lenpen, no_repeat_ngram_size (`OnnxTranslator.translate_ids`)."""
    from mos_search.oracle.scoring import corpus_bleu

    ids = translator.translate_ids(sources, **decoding)
    score, signature = corpus_bleu([translator.tokenizer.decode(h) for h in ids], references)
    return {"onnxruntime": score, "signature": signature}


def _int8_section(
    out: Path,
    sources: list[list[int]],
    references: list[str],
    decoding: dict[str, Any],
    fp32_bleu: float,
    latency: dict[str, dict],
    shapes: Any,
    space: Any,
) -> dict[str, Any]:
    """Quantize to `out/int8/`, re-score (fp32's `decoding`), and time int8 against fp32
    alternately, run by run (int8, fp32, reference, int8, ...: `latency.protocol.measure_pair`),
    on every device of `latency`; the speed-up is the median of the per-run fp32/int8 ratios
    with its interval."""
    from devices import load_profile
    from latency.protocol import measure_pair
    from mos_search.costs.profiling import exported_runs, folder_bundle, latency_entry
    from mos_search.deploy.translate import OnnxTranslator

    int8_dir = quantize_int8(out)
    int8_bleu = _onnx_bleu(OnnxTranslator(int8_dir), sources, references, **decoding)["onnxruntime"]
    bundles = [folder_bundle(d, shapes.past_shapes, shapes.vocab_size) for d in (int8_dir, out)]
    pairs = {}
    for device in latency:
        profile = load_profile(device)
        with exported_runs(profile, bundles, space, shapes.vocab_size) as (runs, reference):
            pairs[device] = (profile, measure_pair(*runs[0], *runs[1], profile, reference))
    return {
        "bleu_onnxruntime": int8_bleu,
        "bleu_change": int8_bleu - fp32_bleu,
        "latency": {d: latency_entry(prof, [pair.a]) for d, (prof, pair) in pairs.items()},
        "fp32_latency_paired": {d: latency_entry(p, [pair.b]) for d, (p, pair) in pairs.items()},
        "speedup": {d: pair.ratio for d, (_, pair) in pairs.items()},
        "speedup_interval": {
            d: [pair.ratio_low, pair.ratio_high] for d, (_, pair) in pairs.items()
        },
        "speedup_coverage": {d: pair.ratio_coverage for d, (_, pair) in pairs.items()},
        "speedup_ratios": {d: pair.ratios for d, (_, pair) in pairs.items()},  # fp32/int8 a round
        "files": {
            n: sha256_file(int8_dir / n) for n in ("encoder.onnx", "decoder_step.onnx", "spm.model")
        },
    }


def export_bert_model(
    checkpoint: str,
    arch_dict: dict[str, Any],
    out: str | Path,
    data: str | None = None,
    test_limit: int | None = 300,
    length: int = 128,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Write a BERT encoder folder (encoder.onnx, spm.model, arch.json, card.json); the card."""
    import onnx
    import onnxruntime as ort
    import torch

    from mos_search.costs.memory import encoder_memory
    from mos_search.data.batches import pad
    from mos_search.models.bert import count_bert_parameters
    from mos_search.models.onnx import OPSET, export_bert_onnx
    from mos_search.oracle.scoring import Oracle

    out = Path(out)
    oracle = Oracle(checkpoint, data, "test", test_limit)
    if oracle.task != "bert":
        raise ConfigError(f"{checkpoint} is not a BERT checkpoint")
    arch = oracle.space.arch_from_dict(arch_dict)
    model = oracle.loaded.sub_network(arch)
    echo(f"export: {arch.to_json()}")
    out.mkdir(parents=True, exist_ok=True)
    path = export_bert_onnx(model, out)
    onnx.checker.check_model(str(path))
    shutil.copy(oracle.tokenizer.path, out / "spm.model")
    (out / "arch.json").write_text(arch.to_json() + "\n")
    tokens = pad(oracle.data.sources[:PARITY_SENTENCES])
    with torch.no_grad():
        expected = model.encoder(tokens).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    states = session.run(None, {"tokens": tokens.numpy()})[0]
    real = tokens.numpy() != 0
    diff = float(np.abs(states - expected)[real].max())
    echo(f"parity: encoder states max |diff| {diff:.2e} on {len(tokens)} test sentences")
    if not diff < BERT_PARITY_TOLERANCE:
        raise ConfigError(
            f"the exported encoder differs from PyTorch by {diff:.2e} (more than "
            f"{BERT_PARITY_TOLERANCE:g}): not written as a model; please report this"
        )
    echo(f"scoring test perplexity on {len(oracle.data)} sentences; measuring memory")
    vocab = oracle.loaded.vocab_size
    card: dict[str, Any] = {
        "format": "mos-search-model/1",
        "task": "bert",
        "arch": arch.to_dict(),
        "space": oracle.space.name,
        "params": count_bert_parameters(arch, vocab),
        "vocab_size": vocab,
        "opset": OPSET,
        "checkpoint": card_checkpoint(oracle.checkpoint, out),
        "checkpoint_sha256": oracle.loaded.digest,
        "perplexity": {
            "split": "test",
            "sentences": len(oracle.data),
            "pytorch": oracle.perplexity(arch),
            "masks": "fixed (seeded per sentence), 15% of tokens, 80/10/10",
        },
        "parity": {"sentences": len(tokens), "states_max_abs_diff": diff},
        "memory": {
            **encoder_memory(arch, vocab, path, length),
            "onnx_file_mib": path.stat().st_size / 2**20,
        },
        "versions": _versions(),
    }
    card["files"] = {n: sha256_file(out / n) for n in ("encoder.onnx", "spm.model", "arch.json")}
    write_json_atomic(out / "card.json", card)
    return card


def export_checkpoint(
    checkpoint: str,
    arch_dict: dict[str, Any],
    out: str | Path,
    *,
    data: str | None = None,
    devices: tuple[str, ...] = ("onnxruntime-cpu",),
    test_limit: int | None = 300,
    beam: int = 5,
    lenpen: float = 1.0,
    no_repeat_ngram_size: int = 0,
    quantize: str | None = None,
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
    remote: RemoteOptions | None = None,
) -> dict[str, Any]:
    """Export `arch_dict` of a checkpoint as its task asks (translation: encoder + decoder step
    with latency on `devices`; BERT: one encoder with memory); returns the card. The folder is
    built aside and swapped in when complete: a model already in `out` is refused unless
    `overwrite`, and kept whole if the export fails. Latency is measured on `remote` if given."""
    from mos_search.models.build import checkpoint_task

    task = checkpoint_task(checkpoint)
    if quantize and task == "bert":
        raise ConfigError("--quantize is for translation models")
    if remote is not None and task == "bert":
        raise ConfigError("--remote measures translation latency; BERT cards hold memory")
    if quantize and remote is not None:
        raise ConfigError(
            "--quantize int8 times int8 against fp32 run by run, here only; with --remote, "
            "export without it (or quantize in a second export measured here)"
        )
    with staged_output_dir(out, overwrite, "model") as folder:
        if task != "bert":
            args = (checkpoint, arch_dict, folder, data, devices, test_limit, beam, quantize, echo)
            decoding = {"lenpen": lenpen, "no_repeat_ngram_size": no_repeat_ngram_size}
            return export_model(*args, **decoding, remote=remote)
        return export_bert_model(checkpoint, arch_dict, folder, data, test_limit, echo=echo)


def card_summary(card: dict[str, Any], out: str | Path) -> str:
    """One line on an exported model: its test score and its measured cost."""
    if card["task"] == "bert":
        memory = card["memory"]
        return (
            f"wrote {out}: test perplexity {card['perplexity']['pytorch']:.2f}, parameters "
            f"{memory['params_fp32_mib']:.1f} MiB fp32, ONNX Runtime peak "
            f"{memory['onnxruntime_peak_mib']:.1f} MiB at length {memory['sequence_length']}"
        )
    bleu = card["bleu"]
    return (
        f"wrote {out}: test BLEU {bleu['onnxruntime']:.2f} (PyTorch {bleu['pytorch']:.2f}), "
        + ", ".join(f"{d} {v['latency_ms']:.1f} ms" for d, v in card["latency"].items())
    )
