"""The demo's stages, one function each, in the order `run.STAGES` runs them; every stage reads
and writes only its `DemoFolder`, so each can be run (and tested) on its own."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mos_search.demo.folder import DEVICE, DemoFolder
from mos_search.files import read_text, split_lines
from mos_search.search.config import Budget, OracleSettings, SearchConfig, VerifySettings


@dataclass(frozen=True)
class DemoStage:
    """A named stage: its work, and the test that says its output is complete."""

    name: str
    work: Callable[[DemoFolder], Any]
    done: Callable[[DemoFolder], bool]


def build_corpus(folder: DemoFolder) -> None:
    """The Bible corpus with a SentencePiece model of the demo's vocabulary (the pretrained
    supernet's tokenizer when there is one)."""
    from mos_search.data.corpus import build_bible_corpus

    tokenizer = None if folder.card is None else Path(folder.config.pretrained, "spm.model")
    build_bible_corpus(folder.data, folder.config.vocab_size, overwrite=True, tokenizer=tokenizer)


def copy_pretrained(folder: DemoFolder) -> None:
    """The pretrained supernet (its weights checked against its card when the demo began),
    copied into the run: the score cache then lives in the run, not in the shipped folder."""
    tmp = folder.supernet.with_name(".supernet.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folder.config.pretrained, tmp)
    shutil.rmtree(folder.supernet, ignore_errors=True)
    tmp.rename(folder.supernet)
    card = folder.card or {}
    folder.echo(
        f"pretrained supernet: {card.get('space')} {card.get('mode')}, "
        f"{card.get('steps')} steps, {card.get('wall_seconds', 0) / 3600:.1f} h of training"
    )


def train_supernet(folder: DemoFolder) -> None:
    """A neuron-wise MoS supernet, trained for the demo's minutes (resumed if interrupted)."""
    from mos_search.training.config import TrainConfig
    from mos_search.training.train import train

    cfg = folder.config
    train_config = TrainConfig(
        data=str(folder.data),
        out=str(folder.supernet),
        space=cfg.preset,
        mode="neuron",
        random_archs=1,
        max_tokens=2048,
        lr=2e-3,
        warmup=100,
        max_steps=10**9,
        minutes=cfg.minutes,
        valid_every=0,
        save_every=25,
        threads=cfg.threads,
    )
    resume = (folder.supernet / "checkpoints" / "latest").exists()
    if resume:
        folder.echo("continuing the interrupted training run")
    if train(train_config, resume=resume).interrupted:
        raise KeyboardInterrupt


def training_finished(folder: DemoFolder) -> bool:
    """The supernet's run has trained for the demo's minutes."""
    from mos_search.models.checkpoint import read_state

    if not (folder.supernet / "checkpoints" / "latest").exists():
        return False
    return read_state(folder.supernet)["elapsed_seconds"] >= folder.config.minutes * 60


def profile(folder: DemoFolder) -> None:
    """A quick latency profile of the space on the CPU with ONNX Runtime."""
    from mos_search.costs.profiling import run_profile
    from mos_search.data.corpus import open_corpus
    from mos_search.data.tokenizer import Tokenizer

    vocab = Tokenizer(open_corpus(folder.data).tokenizer_path).vocab_size
    run = run_profile(
        DEVICE,
        folder.config.preset,
        folder.config.profile_archs,
        vocab_size=vocab,
        dataset=str(folder.dataset),
    )
    if run.interrupted:
        raise KeyboardInterrupt


def profiled(folder: DemoFolder) -> bool:
    """The dataset holds the demo's number of architectures."""
    lines = split_lines(read_text(folder.dataset)) if folder.dataset.exists() else []
    return len(lines) >= folder.config.profile_archs


def fit_predictor(folder: DemoFolder) -> None:
    """The latency predictor of the profile, with its held-out accuracy."""
    from mos_search.costs.predictors import train_latency_predictor

    report = train_latency_predictor(
        folder.dataset, folder.predictor, folder.config.preset, curve_sizes=()
    )
    folder.echo(
        f"predictor: held-out MAPE {report.test.mape:.2f}%, within 10% "
        f"{report.test.within_10:.0f}%, Kendall tau {report.test.kendall_tau:.3f}"
    )


def search_config(folder: DemoFolder) -> SearchConfig:
    """NSGA-II on validation loss vs predicted latency under the demo's budget."""
    cfg = folder.config
    return SearchConfig(
        task="mt",
        algorithm="nsga2",
        generations=cfg.generations,
        population=cfg.population,
        quality="loss",
        devices=(DEVICE,),
        predictors=(str(folder.predictor),),
        budgets=(Budget.latency_ms(folder.budget_ms(), DEVICE),),
        latency_confidence=cfg.latency_confidence,
        oracle=OracleSettings(
            checkpoint=str(folder.supernet),
            data=str(folder.data),
            limit=cfg.search_limit,
            beam=1,
            threads=cfg.threads,
        ),
    )


def search_verify_report(folder: DemoFolder) -> None:
    """Search, verify the front (measured latency, test BLEU) and write the report."""
    from mos_search.search.objectives import search_task

    cfg = folder.config
    result = search_task(
        search_config(folder),
        folder.search,
        resume=(folder.search / "search.json").exists(),
        verify=VerifySettings(cfg.test_limit, 5, cfg.verify_max),
        echo=folder.echo,
    )
    if result.interrupted:
        raise KeyboardInterrupt


def export(folder: DemoFolder) -> None:
    """Export the best verified model of the search (ONNX, card, measured latency), the pick's
    decision (ties by paired bootstrap, most slack among them) recorded in its card."""
    from mos_search.deploy.package import export_checkpoint
    from mos_search.search.pick import pick_decision

    decision = pick_decision(folder.search, "best")
    export_checkpoint(
        str(folder.supernet),
        decision.arch,
        folder.model,
        data=str(folder.data),
        devices=(DEVICE,),
        test_limit=folder.config.test_limit,
        overwrite=True,  # the stage is not done: whatever is there is incomplete
        echo=folder.echo,
    )
    decision.write_into_card(folder.model)


def translate_samples(folder: DemoFolder) -> None:
    """A few test sentences translated by the exported model with ONNX Runtime alone, beam 5
    with trigrams blocked against a briefly trained model's loops (only here: the BLEU of the
    card and of the verification keep fairseq's defaults, blocking off); printed and written to
    `translations.txt`."""
    from mos_search.data.corpus import open_corpus
    from mos_search.deploy.translate import OnnxTranslator

    count = folder.config.translate_sentences
    pairs = open_corpus(folder.data).pairs("test")
    chosen = pairs[:: max(len(pairs) // count, 1)][:count]
    sources = [s for s, _ in chosen]
    hypotheses = OnnxTranslator(folder.model).translate(sources, beam=5, no_repeat_ngram_size=3)
    rows = [(s, h, r) for (s, r), h in zip(chosen, hypotheses)]
    (folder.root / "translations.txt").write_text(
        "".join(f"es: {s}\nmt: {h}\nen: {r}\n\n" for s, h, r in rows)
    )
    for source, hypothesis, reference in rows:
        folder.echo(f"  es: {source}\n  mt: {hypothesis}\n  en: {reference}")


def _exists(*parts: str) -> Callable[[DemoFolder], bool]:
    return lambda folder: folder.root.joinpath(*parts).exists()


def stages(folder: DemoFolder) -> list[DemoStage]:
    """The demo's stages in order: the supernet copied when the demo starts from a pretrained
    one, trained otherwise; `translate` always runs."""
    supernet = (
        DemoStage("pretrained supernet", copy_pretrained, _exists("supernet", "card.json"))
        if folder.card is not None
        else DemoStage("train supernet", train_supernet, training_finished)
    )
    return [
        DemoStage("corpus", build_corpus, _exists("data", "corpus.json")),
        supernet,
        DemoStage("profile", profile, profiled),
        DemoStage("predictor", fit_predictor, lambda f: f.predictor.exists()),
        DemoStage(
            "search + verify + report",
            search_verify_report,
            _exists("search", "report", "index.html"),
        ),
        DemoStage("export", export, _exists("model", "card.json")),
        DemoStage("translate", translate_samples, lambda f: False),
    ]
