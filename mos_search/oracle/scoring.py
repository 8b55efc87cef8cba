"""The scoring oracle: loss, sacreBLEU or masked-LM perplexity of any architecture a checkpoint
holds, cached.

Scores are cached on disk (one JSON line each) under a key of (the weights' content digest,
corpus digest, arch, metric and its settings, split, slice), so a search never scores the same
thing twice and a retrained checkpoint never reuses stale scores. The content digest is checked
against the one the checkpoint recorded when the weights are loaded: a weights file replaced in
place is refused before the cache is opened.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import sacrebleu
import torch

from mos_search.arch import ArchBase
from mos_search.constants import METRICS
from mos_search.data.batches import encode_split
from mos_search.data.corpus import open_corpus
from mos_search.data.tokenizer import Tokenizer
from mos_search.errors import ConfigError
from mos_search.models.build import count_arch_parameters, load_model
from mos_search.models.checkpoint import read_state, resolve_checkpoint
from mos_search.models.losses import validation_loss
from mos_search.models.mlm import EVAL_MASK_SEED
from mos_search.oracle.cache import ScoreCache
from mos_search.oracle.decode import translate_ids
from mos_search.space import SearchSpace

MLM_MAX_LEN = 128  # masked-LM sentences are cut to this many tokens unless training said else


@dataclass(frozen=True)
class BleuResult:
    """A corpus BLEU with its sacreBLEU signature and the hypotheses it was computed on."""

    score: float
    signature: str
    hypotheses: list[str]


def corpus_bleu(hypotheses: list[str], references: list[str]) -> tuple[float, str]:
    """sacreBLEU corpus score (default 13a tokenisation) and its signature."""
    metric = sacrebleu.BLEU()
    result = metric.corpus_score(hypotheses, [references])
    return float(result.score), str(metric.get_signature())


class RecordSource(Protocol):
    """What computes score records elsewhere (a `ScoringPool` of worker processes)."""

    def compute(
        self, archs: list[ArchBase], metric: str, beam: int
    ) -> list[tuple[dict, list[str] | None]]:
        """(record, hypotheses) of each arch."""
        ...


class Oracle:
    """Scores architectures of one checkpoint on one data split (optionally its first `limit`)."""

    def __init__(
        self,
        checkpoint: str | Path,
        data: str | Path | None = None,
        split: str = "valid",
        limit: int | None = None,
        cache_path: str | Path | None = "auto",
        threads: int = 1,
        max_tokens: int = 4096,
    ) -> None:
        torch.set_num_threads(threads)
        self.checkpoint = resolve_checkpoint(checkpoint)
        self.loaded = load_model(self.checkpoint)
        data = data or read_state(self.checkpoint).get("train_config", {}).get("data")
        if data is None:
            raise ConfigError("no data folder given and the checkpoint names none")
        self.task = self.loaded.task
        if self.task == "bert":
            from mos_search.data.text import encode_text_split, open_text_corpus
            from mos_search.models.mlm import check_mask_token

            self.corpus = open_text_corpus(data)
        else:
            self.corpus = open_corpus(data)
        self.tokenizer = Tokenizer(self.corpus.tokenizer_path)
        if self.tokenizer.vocab_size != self.loaded.vocab_size:
            raise ConfigError(
                f"the corpus tokenizer has {self.tokenizer.vocab_size} ids, the "
                f"checkpoint expects {self.loaded.vocab_size}"
            )
        self.split, self.limit, self.max_tokens = split, limit, max_tokens
        self.max_len = None
        if self.task == "bert":
            self.mask_id = check_mask_token(self.tokenizer.mask_id, str(data))
            trained = read_state(self.checkpoint).get("train_config", {})
            self.max_len = int(trained.get("max_len", MLM_MAX_LEN))
            encoded = encode_text_split(self.corpus, split, self.tokenizer, self.max_len)
        else:
            encoded = encode_split(self.corpus, split, self.tokenizer)
        self.data = encoded.subset(limit)
        if cache_path == "auto":  # in the run folder, shared by its checkpoints; else beside it
            in_run = self.checkpoint.parent.name == "checkpoints"
            cache_dir = self.checkpoint.parent.parent if in_run else self.checkpoint
            cache_path = cache_dir / "score_cache.jsonl"
        self.cache = ScoreCache(Path(cache_path) if cache_path else None)

    def settings(self) -> dict:
        """What another process needs to build the same oracle (a scoring pool's workers)."""
        return {
            "checkpoint": str(self.checkpoint),
            "data": str(self.corpus.root),
            "split": self.split,
            "limit": self.limit,
            "max_tokens": self.max_tokens,
        }

    @property
    def space(self) -> SearchSpace:
        """The search space of the checkpoint."""
        return self.loaded.space

    def _key(self, arch: ArchBase, metric: str, **settings: object) -> str:
        return ScoreCache.key(
            model=self.loaded.digest,
            corpus=self.corpus.digest(),
            arch=arch.to_dict(),
            metric=metric,
            split=self.split,
            limit=self.limit,
            **settings,
            **({"max_len": self.max_len, "mask_seed": EVAL_MASK_SEED} if self.max_len else {}),
        )

    def _cache_key(
        self, arch: ArchBase, metric: str, beam: int, lenpen: float, no_repeat_ngram_size: int = 0
    ) -> str:
        """Loss and perplexity share one record (perplexity = exp(loss)). BLEU is keyed by its
        decoding options; n-gram blocking only when on, so scores cached before it stay valid."""
        if metric == "bleu":
            blocked = {"no_repeat_ngram_size": no_repeat_ngram_size} if no_repeat_ngram_size else {}
            return self._key(arch, "bleu", beam=beam, lenpen=lenpen, **blocked)
        return self._key(arch, "loss")

    def compute(
        self,
        arch: ArchBase,
        metric: str,
        beam: int = 5,
        lenpen: float = 1.0,
        no_repeat_ngram_size: int = 0,
    ) -> tuple[dict, list[str] | None]:
        """Score `arch` without the cache: the cache record and, for BLEU, the hypotheses
        (decoding options: `beam.py`)."""
        model = self.loaded.sub_network(arch)
        if metric == "bleu":
            if self.task == "bert":
                raise ConfigError("BLEU is a translation metric; this checkpoint is a BERT model")
            ids = translate_ids(
                model, self.data, beam, lenpen, no_repeat_ngram_size=no_repeat_ngram_size
            )
            hypotheses = [self.tokenizer.decode(h) for h in ids]
            score, signature = corpus_bleu(hypotheses, self.data.references)
            record = {"metric": "bleu", "value": score, "signature": signature, "beam": beam}
            record |= {"lenpen": lenpen, "no_repeat_ngram_size": no_repeat_ngram_size}
            return {**record, "arch": arch.to_dict()}, hypotheses
        if self.task == "bert":
            from mos_search.models.mlm import masked_lm_nll

            vocab = self.loaded.vocab_size
            value = masked_lm_nll(model, self.data, vocab, self.mask_id, self.max_tokens)  # fixed
        else:
            value = validation_loss(model, self.data, self.max_tokens)
        return {"metric": "loss", "value": value, "arch": arch.to_dict()}, None

    def _record(
        self,
        arch: ArchBase,
        metric: str,
        beam: int = 5,
        lenpen: float = 1.0,
        no_repeat_ngram_size: int = 0,
    ) -> tuple[dict, list[str] | None]:
        """The cached record of a score, computed (and cached) on a miss."""
        key = self._cache_key(arch, metric, beam, lenpen, no_repeat_ngram_size)
        hit = self.cache.get(key)
        lines = self.cache.lines(key) if hit is not None and metric == "bleu" else None
        if hit is not None and (metric != "bleu" or lines is not None):
            return hit, lines
        record, lines = self.compute(arch, metric, beam, lenpen, no_repeat_ngram_size)
        self.cache.put(key, record, lines)
        return record, lines

    def loss(self, arch: ArchBase) -> float:
        """Mean NLL per target token (nats) of `arch` on the split (BERT: per masked token,
        with the split's fixed masks)."""
        return self._record(arch, "loss")[0]["value"]

    def perplexity(self, arch: ArchBase) -> float:
        """Masked-LM perplexity of a BERT `arch`: exp of `loss` (cached with it)."""
        if self.task != "bert":
            raise ConfigError("perplexity is the masked-LM metric; this checkpoint translates")
        from mos_search.models.mlm import perplexity

        return perplexity(self.loss(arch))

    def bleu(
        self, arch: ArchBase, beam: int = 5, lenpen: float = 1.0, no_repeat_ngram_size: int = 0
    ) -> BleuResult:
        """sacreBLEU of `arch`'s translations (detokenised) of the split."""
        record, lines = self._record(arch, "bleu", beam, lenpen, no_repeat_ngram_size)
        return BleuResult(record["value"], record["signature"], lines or [])

    def score(self, arch: ArchBase, metric: str, beam: int = 5) -> float:
        """The value of `metric` ("loss", "perplexity": lower is better; "bleu": higher)."""
        if metric == "loss":
            return self.loss(arch)
        if metric == "perplexity":
            return self.perplexity(arch)
        if metric == "bleu":
            return self.bleu(arch, beam).score
        raise ConfigError(f"metric: expected one of {', '.join(METRICS)}, found {metric!r}")

    def score_many(
        self, archs: list[ArchBase], metric: str, beam: int = 5, pool: RecordSource | None = None
    ) -> list[float]:
        """`score` of each arch; the ones not cached are computed by `pool`'s workers at once
        (the same numbers as computing them here, one after another)."""
        if pool is not None:
            missing, seen = [], set()
            for arch in archs:
                key = self._cache_key(arch, metric, beam, 1.0)
                if key not in seen and self.cache.values.get(key) is None:
                    seen.add(key)
                    missing.append(arch)
            for arch, (record, lines) in zip(missing, pool.compute(missing, metric, beam)):
                self.cache.put(self._cache_key(arch, metric, beam, 1.0), record, lines)
        return [self.score(arch, metric, beam) for arch in archs]


def parse_archs(text: str, space: SearchSpace) -> list[ArchBase]:
    """One architecture, or a list of them, from JSON text."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"architecture file is not valid JSON: {exc}") from None
    items = data if isinstance(data, list) else [data]
    return [space.arch_from_dict(item) for item in items]


def score_report(
    checkpoint: str,
    *,
    data: str | None = None,
    arch_json: str | None = None,
    presets: tuple[str, ...] | list[str] = (),
    metrics: list[str] | None = None,
    split: str = "valid",
    limit: int | None = None,
    beam: int = 5,
    threads: int = 1,
    lenpen: float = 1.0,
    no_repeat_ngram_size: int = 0,
) -> str:
    """Score the requested architectures; a table, then the sacreBLEU signature and the
    decoding options."""
    oracle = Oracle(checkpoint, data, split, limit, threads=threads)
    metrics = metrics or (["loss", "perplexity"] if oracle.task == "bert" else ["loss", "bleu"])
    archs = [(name, getattr(oracle.space, name)()) for name in presets]
    if arch_json:
        archs += [(f"arch{i}", a) for i, a in enumerate(parse_archs(arch_json, oracle.space))]
    archs += [("standalone", a) for a in oracle.loaded.archs() if not archs]
    if not archs:
        raise ConfigError("nothing to score: give --arch FILE or --preset-arch largest|smallest")
    columns = ["params", *metrics]
    widths = [max(9, len(column)) for column in columns]  # and two spaces before each
    first = max(len(name) for name in ["arch", *(name for name, _ in archs)])

    def line(name: str, cells: list[str]) -> str:
        return f"{name:<{first}}" + "".join(f"  {c:>{w}}" for c, w in zip(cells, widths))

    lines = [line("arch", columns)]
    signature = None
    for name, arch in archs:
        params = count_arch_parameters(oracle.space, arch, oracle.loaded.vocab_size)
        cells = [f"{params / 1e6:.2f}M"]
        for metric in metrics:
            if metric == "bleu":
                result = oracle.bleu(arch, beam, lenpen, no_repeat_ngram_size)
                cells.append(f"{result.score:.2f}")
                signature = result.signature
            elif metric == "perplexity":
                cells.append(f"{oracle.perplexity(arch):.2f}")
            else:
                cells.append(f"{oracle.loss(arch):.3f}")
        lines.append(line(name, cells))
    per = "masked token, fixed masks" if oracle.task == "bert" else "target token"
    notes = [f"loss = NLL per {per} (nats)"] if "loss" in metrics else []
    notes += [f"perplexity = exp(NLL per {per})"] if "perplexity" in metrics else []
    lines.append(
        f"split {split}"
        + (f" ({limit} spread over it)" if limit else "")
        + f", {len(oracle.data)} sentences"
        + "".join(f"; {note}" for note in notes)
    )
    if signature:
        lines.append(
            f"sacreBLEU signature: {signature}; beam {beam}, lenpen {lenpen:g}, "
            f"no-repeat-ngram {no_repeat_ngram_size}"
        )
    return "\n".join(lines)
