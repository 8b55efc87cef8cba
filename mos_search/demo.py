"""`mos-search demo`: the whole chain on the embedded defaults, each stage resumable.

corpus -> neuron-wise MoS supernet -> latency profile of the CPU ONNX Runtime device -> predictor
-> NSGA-II search (validation loss vs predicted latency) -> verified front -> report -> export of
the best model under the budget -> a few test sentences translated with ONNX Runtime alone.
Every stage writes into one run folder and is skipped (or resumed) when run again.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mos_search.errors import ConfigError
from mos_search.files import (
    check_writable_dir,
    read_json,
    read_text,
    split_lines,
    write_json_atomic,
)
from mos_search.search.config import (
    DEFAULT_LATENCY_CONFIDENCE,
    Budget,
    OracleSettings,
    SearchConfig,
    VerifySettings,
)

DEVICE = "onnxruntime-cpu-quick"


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; the defaults fit about 20 minutes on 2 CPU cores."""

    out: str = "runs/demo"
    preset: str = "cpu-tiny"
    vocab_size: int = 4000
    minutes: float = 8.0
    threads: int = 2
    profile_archs: int = 80
    generations: int = 8
    population: int = 24
    search_limit: int = 100
    test_limit: int = 200
    verify_max: int = 4
    translate_sentences: int = 5
    budget_quantile: float = 0.5  # the latency budget: this quantile of the profiled latencies
    latency_confidence: float = DEFAULT_LATENCY_CONFIDENCE  # the search's budgets hold so
    # a pretrained supernet folder to start from (its space, vocabulary and tokenizer replace
    # `preset` and `vocab_size`; nothing is trained); None trains one for `minutes`
    pretrained: str | None = None


SAME_DEMO_KEYS = ("preset", "vocab_size", "pretrained")  # what a continued demo may not change


def default_pretrained() -> Path:
    """The pretrained supernet shipped in the repository (`pretrained/cpu-small-neuron`)."""
    return Path(__file__).resolve().parents[1] / "pretrained" / "cpu-small-neuron"


class Stage:
    """Times a stage and records it in `demo.json`."""

    def __init__(self, root: Path, echo: Callable[[str], None]) -> None:
        self.root, self.echo = root, echo
        self.path = root / "demo.json"
        self.record: dict[str, Any] = read_json(self.path) if self.path.exists() else {"stages": {}}

    def run(self, name: str, work: Callable[[], Any], done: bool = False) -> Any:
        """Run `work` unless the stage is `done`; keep its wall time."""
        if done:
            self.echo(f"[{name}] already done, skipped")
            return None
        self.echo(f"[{name}] ...")
        started = time.perf_counter()
        result = work()
        spent = time.perf_counter() - started
        stages = self.record["stages"]
        stages[name] = stages.get(name, 0.0) + spent
        write_json_atomic(self.path, self.record)
        self.echo(f"[{name}] done in {spent:.0f} s")
        return result


class Demo:
    """The demo's run folder and its stages, each a method; `run` runs what is not done yet."""

    def __init__(self, config: DemoConfig, echo: Callable[[str], None] = print) -> None:
        self.card: dict[str, Any] | None = None
        if config.pretrained is not None:  # its space and vocabulary are the demo's
            from mos_search.deploy.pretrained import read_card

            self.card = read_card(config.pretrained)
            config = replace(config, preset=self.card["space"], vocab_size=self.card["vocab_size"])
        self.config, self.echo = config, echo
        self.root = root = Path(config.out)
        self.data, self.supernet = root / "data", root / "supernet"
        profiles = root / "devices" if (root / "devices").is_dir() else root / "profile"  # 0.1
        self.dataset = profiles / DEVICE / "latency.jsonl"
        self.predictor = self.dataset.with_name("predictor.json")
        self.search, self.model = root / "search", root / "model"

    def run(self) -> dict[str, Any]:
        """Run (or continue) every stage; returns the summary also written to `demo.json`."""
        check_writable_dir(self.root)
        self._check_same_demo()
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.root / "config.json", asdict(self.config))
        stage = Stage(self.root, self.echo)
        cfg = self.config
        stage.run("corpus", self.build_corpus, done=(self.data / "corpus.json").exists())
        if self.card is not None:
            stage.run(
                "pretrained supernet",
                self.copy_pretrained,
                done=(self.supernet / "card.json").exists(),
            )
        else:
            stage.run(
                "train supernet",
                self.train_supernet,
                done=_training_finished(self.supernet, cfg.minutes),
            )
        stage.run("profile", self.profile, done=_lines(self.dataset) >= cfg.profile_archs)
        stage.run("predictor", self.fit_predictor, done=self.predictor.exists())
        budget_ms = _default_budget_ms(self.dataset, self.search, self.config.budget_quantile)
        self.echo(
            f"latency budget: {budget_ms:.1f} ms (quantile {self.config.budget_quantile:g} of the "
            f"profiled archs' measured latencies), met with confidence "
            f"{self.config.latency_confidence:g}"
        )
        stage.run(
            "search + verify + report",
            lambda: self.search_verify_report(budget_ms),
            done=(self.search / "report" / "index.html").exists(),
        )
        stage.run("export", self.export, done=(self.model / "card.json").exists())
        translations = stage.run("translate", self.translate_samples)
        for source, hypothesis, reference in translations:
            self.echo(f"  es: {source}\n  mt: {hypothesis}\n  en: {reference}")
        stage.record["summary"] = self.summary(stage.record["stages"], budget_ms)
        write_json_atomic(stage.path, stage.record)
        return stage.record["summary"]

    def _check_same_demo(self) -> None:
        """A ConfigError when the run folder holds a demo of another corpus or supernet (its
        finished stages would be reused with the wrong tokenizer or space)."""
        saved_path = self.root / "config.json"
        if not saved_path.is_file():
            return
        saved, mine = read_json(saved_path), asdict(self.config)
        changed = [k for k in SAME_DEMO_KEYS if saved.get(k) != mine.get(k)]
        if changed:
            theirs = ", ".join(f"{k} {saved.get(k)!r}" for k in changed)
            raise ConfigError(
                f"{self.root} holds a demo of another setup ({theirs}); choose another --out "
                "or remove that folder"
            )

    def build_corpus(self) -> None:
        """The Bible corpus with a SentencePiece model of the demo's vocabulary."""
        from mos_search.data.corpus import build_bible_corpus

        tokenizer = None if self.card is None else Path(self.config.pretrained, "spm.model")
        build_bible_corpus(self.data, self.config.vocab_size, overwrite=True, tokenizer=tokenizer)

    def copy_pretrained(self) -> None:
        """The pretrained supernet (its weights checked against its card when the demo began),
        copied into the run: the score cache then lives in the run, not in the shipped folder."""
        tmp = self.supernet.with_name(".supernet.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(self.config.pretrained, tmp)
        shutil.rmtree(self.supernet, ignore_errors=True)
        tmp.rename(self.supernet)
        card = self.card or {}
        self.echo(
            f"pretrained supernet: {card.get('space')} {card.get('mode')}, "
            f"{card.get('steps')} steps, {card.get('wall_seconds', 0) / 3600:.1f} h of training"
        )

    def train_supernet(self) -> None:
        """A neuron-wise MoS supernet, trained for the demo's minutes (resumed if interrupted)."""
        from mos_search.training.config import TrainConfig
        from mos_search.training.train import train

        cfg = self.config
        train_config = TrainConfig(
            data=str(self.data),
            out=str(self.supernet),
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
        resume = (self.supernet / "checkpoints" / "latest").exists()
        if resume:
            self.echo("continuing the interrupted training run")
        if train(train_config, resume=resume).interrupted:
            raise KeyboardInterrupt

    def profile(self) -> None:
        """A quick latency profile of the space on the CPU with ONNX Runtime."""
        from mos_search.costs.profiling import run_profile
        from mos_search.data.corpus import open_corpus
        from mos_search.data.tokenizer import Tokenizer

        vocab = Tokenizer(open_corpus(self.data).tokenizer_path).vocab_size
        run = run_profile(
            DEVICE,
            self.config.preset,
            self.config.profile_archs,
            vocab_size=vocab,
            dataset=str(self.dataset),
        )
        if run.interrupted:
            raise KeyboardInterrupt

    def fit_predictor(self) -> None:
        """The latency predictor of the profile, with its held-out accuracy."""
        from mos_search.costs.predictors import train_latency_predictor

        report = train_latency_predictor(
            self.dataset, self.predictor, self.config.preset, curve_sizes=()
        )
        self.echo(
            f"predictor: held-out MAPE {report.test.mape:.2f}%, within 10% "
            f"{report.test.within_10:.0f}%, Kendall tau {report.test.kendall_tau:.3f}"
        )

    def search_config(self, budget_ms: float) -> SearchConfig:
        """NSGA-II on validation loss vs predicted latency under `budget_ms`."""
        cfg = self.config
        return SearchConfig(
            task="mt",
            algorithm="nsga2",
            generations=cfg.generations,
            population=cfg.population,
            quality="loss",
            devices=(DEVICE,),
            predictors=(str(self.predictor),),
            budgets=(Budget.latency_ms(budget_ms, DEVICE),),
            latency_confidence=cfg.latency_confidence,
            oracle=OracleSettings(
                checkpoint=str(self.supernet),
                data=str(self.data),
                limit=cfg.search_limit,
                beam=1,
                threads=cfg.threads,
            ),
        )

    def search_verify_report(self, budget_ms: float) -> None:
        """Search, verify the front (measured latency, test BLEU) and write the report."""
        from mos_search.search.objectives import search_task

        result = search_task(
            self.search_config(budget_ms),
            self.search,
            resume=(self.search / "search.json").exists(),
            verify=VerifySettings(self.config.test_limit, 5, self.config.verify_max),
            echo=self.echo,
        )
        if result.interrupted:
            raise KeyboardInterrupt

    def export(self) -> None:
        """Export the best verified model of the search (ONNX, card, measured latency)."""
        from mos_search.deploy.package import export_checkpoint
        from mos_search.search.pick import pick_decision

        decision = pick_decision(self.search, "best")
        export_checkpoint(
            str(self.supernet),
            decision.arch,
            self.model,
            data=str(self.data),
            devices=(DEVICE,),
            test_limit=self.config.test_limit,
            overwrite=True,  # the stage is not done: whatever is there is incomplete
            echo=self.echo,
        )
        decision.write_into_card(self.model)

    def translate_samples(self) -> list[tuple[str, str, str]]:
        """A few test sentences translated by the exported model with ONNX Runtime alone, beam 5
        with trigrams blocked against a briefly trained model's loops (only here: the BLEU of the
        card and of the verification keep fairseq's defaults, blocking off)."""
        from mos_search.data.corpus import open_corpus
        from mos_search.deploy.translate import OnnxTranslator

        count = self.config.translate_sentences
        pairs = open_corpus(self.data).pairs("test")
        chosen = pairs[:: max(len(pairs) // count, 1)][:count]
        sources = [s for s, _ in chosen]
        hypotheses = OnnxTranslator(self.model).translate(sources, beam=5, no_repeat_ngram_size=3)
        rows = [(s, h, r) for (s, r), h in zip(chosen, hypotheses)]
        (self.root / "translations.txt").write_text(
            "".join(f"es: {s}\nmt: {h}\nen: {r}\n\n" for s, h, r in rows)
        )
        return rows

    def summary(self, stages: dict[str, float], budget_ms: float) -> dict[str, Any]:
        """Stage times, the budget, the exported model's figures and where the report is."""
        from mos_search.search.pick import measured_upper_ms

        card = read_json(self.model / "card.json")
        latency = card["latency"][DEVICE]
        verified = read_json(self.search / "verified.json")["archs"]
        row = next(v for v in verified if v["arch"] == card["arch"])
        return {
            "stages_seconds": stages,
            "total_seconds": sum(stages.values()),
            "budget_ms": budget_ms,
            "model": {
                "arch": card["arch"],
                "params": card["params"],
                "test_bleu": card["bleu"]["onnxruntime"],
                "test_sentences": card["bleu"]["sentences"],
                "latency_ms": latency["latency_ms"],
                "low_ms": latency["low_ms"],
                "high_ms": latency["high_ms"],
                "reference_ms": latency["reference_ms"],
                "device": DEVICE,
                # verification, at the predictor's reference speed: what the budget is about
                "verified_ms": row["measured_scaled_ms"][DEVICE],
                "verified_upper_ms": measured_upper_ms(row, DEVICE),
                "meets_budget": measured_upper_ms(row, DEVICE) <= budget_ms,
            },
            "report": str(self.search / "report" / "index.html"),
        }


def run_demo(config: DemoConfig, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or continue) every stage of the demo; returns the summary written to `demo.json`."""
    return Demo(config, echo).run()


def _lines(path: Path) -> int:
    return len(split_lines(read_text(path))) if path.exists() else 0


def _training_finished(run: Path, minutes: float) -> bool:
    from mos_search.models.checkpoint import read_state

    if not (run / "checkpoints" / "latest").exists():
        return False
    return read_state(run)["elapsed_seconds"] >= minutes * 60


def _default_budget_ms(dataset: Path, search: Path, quantile: float = 0.5) -> float:
    """A quantile of the measured latencies (the median: about half the space meets it); a
    started search keeps its budget."""
    from latency.dataset import drift_corrected_ms, fit_drift_elasticity, read_records

    settings = search / "search.json"
    if settings.exists():
        config = SearchConfig.from_dict(read_json(settings))
        return next(b.limit for b in config.budgets if b.metric == "latency")
    records = read_records(dataset)
    corrected = drift_corrected_ms(records, fit_drift_elasticity(records))
    return round(float(np.quantile(corrected, quantile)), 1)
