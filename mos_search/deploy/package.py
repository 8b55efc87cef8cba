"""Export one sub-network for deployment: ONNX graphs, tokenizer, and a model card with checks.

`export_model` extracts the architecture from a checkpoint, writes `encoder.onnx` and
`decoder_step.onnx` (opset 17, checked by `onnx.checker`), copies the SentencePiece model, then
checks the ONNX files against PyTorch (largest output difference, identical greedy tokens),
scores both on the test split with sacreBLEU, measures latency on the requested devices (3 passes,
each interleaved with the reference workload: median, interval, spread, flag, reference) and writes
everything into `card.json` with the sha256 of every file. `--quantize int8` adds an `int8/`
model folder (ONNX Runtime dynamic quantization) with its BLEU change and its speed-up, int8 and
fp32 timed alternately run by run. The checks live in `parity.py`, the quantization in
`int8.py`, the card's names and versions in `card.py`; this module puts a model folder together.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mos_search.deploy.card import card_checkpoint, versions
from mos_search.deploy.int8 import int8_section
from mos_search.deploy.parity import PARITY_SENTENCES, bert_parity, onnx_bleu, parity
from mos_search.errors import ConfigError
from mos_search.files import sha256_file, staged_output_dir, write_json_atomic

if TYPE_CHECKING:
    from latency.ssh import RemoteOptions


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
        **onnx_bleu(translator, sources, oracle.data.references, **decoding),
    }
    shapes = GraphShapes.of(model)
    bundle = folder_bundle(out, shapes.past_shapes, shapes.vocab_size)
    latency = _latency_on(devices, bundle, arch, space, remote, echo)
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
        "memory": None if remote else deployment_memory(bundle),
        "versions": versions(),
    }
    if quantize == "int8":
        echo("quantizing to int8 (dynamic) and re-scoring")
        references, fp32_bleu = oracle.data.references, bleu["onnxruntime"]
        card["int8"] = int8_section(
            out, sources, references, decoding, fp32_bleu, latency, shapes, space
        )
    names = ("encoder.onnx", "decoder_step.onnx", "spm.model", "arch.json")
    card["files"] = {n: sha256_file(out / n) for n in names}
    write_json_atomic(out / "card.json", card)
    return card


def _latency_on(
    devices: tuple[str, ...],
    bundle: Any,
    arch: Any,
    space: Any,
    remote: RemoteOptions | None,
    echo: Callable[[str], None],
) -> dict[str, Any]:
    """The card's latency on each device (`measure_model_latency`), here or on `remote`."""
    from mos_search.costs.model_latency import measure_model_latency

    echo(f"measuring on {', '.join(devices)}" + (f" on {remote.target}" if remote else ""))
    return {d: measure_model_latency(d, bundle, arch, space, remote=remote) for d in devices}


def deployment_memory(bundle: Any) -> dict[str, Any] | None:
    """Peak memory of the exported graphs on ONNX Runtime (CPU) running the HAT workload, in a
    fresh process (`latency.memory`), the figure a `--max-memory-mib` search limits; None where
    it cannot be measured (not Linux)."""
    from devices import DeviceError, load_profile
    from latency.memory import bundle_peak_memory

    try:
        measured = bundle_peak_memory(bundle, load_profile("onnxruntime-cpu"))
    except DeviceError:
        return None
    return {"onnxruntime_peak_mib": measured["peak_inference_mib"], "profile": measured["profile"]}


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
    diff = bert_parity(model, path, tokens)
    echo(f"parity: encoder states max |diff| {diff:.2e} on {len(tokens)} test sentences")
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
        "versions": versions(),
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
