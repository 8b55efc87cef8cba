"""`mos-search demo`: the whole chain on the embedded defaults, each stage resumable.

corpus -> neuron-wise MoS supernet -> latency profile of the CPU ONNX Runtime device -> predictor
-> NSGA-II search (validation loss vs predicted latency) -> verified front -> report -> export of
the best model under the budget -> a few test sentences translated with ONNX Runtime alone.
Every stage writes into one run folder and is skipped (or resumed) when run again.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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


class Stage:
    """Times a stage and records it in `demo.json`."""

    def __init__(self, root: Path, echo: Callable[[str], None]) -> None:
        self.root, self.echo = root, echo
        self.path = root / "demo.json"
        self.record: dict[str, Any] = (
            json.loads(self.path.read_text()) if self.path.exists() else {"stages": {}}
        )

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
        self.path.write_text(json.dumps(self.record, indent=1))
        self.echo(f"[{name}] done in {spent:.0f} s")
        return result


def run_demo(config: DemoConfig, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or continue) every stage; returns the summary also written to `demo.json`."""
    from mos_search.data.corpus import build_bible_corpus
    from mos_search.deploy import export_model, pick_from_search
    from mos_search.latency_model import train_latency_predictor
    from mos_search.objectives import search_task
    from mos_search.onnx_translate import OnnxTranslator
    from mos_search.profile import run_profile
    from mos_search.search import SearchConfig
    from mos_search.train import TrainConfig, train

    root = Path(config.out)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(asdict(config), indent=1))
    stage = Stage(root, echo)
    data, supernet = root / "data", root / "supernet"
    dataset = root / "devices" / DEVICE / "latency.jsonl"
    predictor = dataset.with_name("predictor.json")
    search, model = root / "search", root / "model"

    stage.run(
        "corpus",
        lambda: build_bible_corpus(data, config.vocab_size),
        done=(data / "corpus.json").exists(),
    )
    train_config = TrainConfig(
        data=str(data),
        out=str(supernet),
        space=config.preset,
        mode="neuron",
        random_archs=1,
        max_tokens=2048,
        lr=2e-3,
        warmup=100,
        max_steps=10**9,
        minutes=config.minutes,
        valid_every=0,
        save_every=25,
        threads=config.threads,
    )
    stage.run(
        "train supernet",
        lambda: _train_or_resume(train_config, train, echo),
        done=_training_finished(supernet, config.minutes),
    )

    def profile() -> None:
        from mos_search.data.corpus import open_corpus
        from mos_search.data.tokenizer import Tokenizer

        vocab = Tokenizer(open_corpus(data).tokenizer_path).vocab_size
        run = run_profile(
            DEVICE, config.preset, config.profile_archs, vocab_size=vocab, dataset=str(dataset)
        )
        if run.interrupted:
            raise KeyboardInterrupt

    stage.run("profile", profile, done=_lines(dataset) >= config.profile_archs)

    def fit_predictor() -> None:
        report = train_latency_predictor(dataset, predictor, config.preset, curve_sizes=())
        echo(
            f"predictor: held-out MAPE {report.test.mape:.2f}%, within 10% "
            f"{report.test.within_10:.0f}%, Kendall tau {report.test.kendall_tau:.3f}"
        )

    stage.run("predictor", fit_predictor, done=predictor.exists())
    budget = _default_budget(dataset, search)
    search_config = SearchConfig(
        algorithm="nsga2",
        generations=config.generations,
        population=config.population,
        metric="loss",
        devices=(DEVICE,),
        max_latency_ms={DEVICE: budget},
        extra={
            "task": "mt",
            "objective": "bleu-latency",
            "checkpoint": str(supernet),
            "data": str(data),
            "limit": config.search_limit,
            "beam": 1,
            "threads": config.threads,
            "predictors": [str(predictor)],
        },
    )
    echo(f"latency budget: {budget:.1f} ms (median measured latency of the profiled archs)")

    def search_verify_report() -> None:
        result = search_task(
            search_config,
            search,
            resume=(search / "search.json").exists(),
            verify={"test_limit": config.test_limit, "beam": 5, "max_archs": config.verify_max},
            echo=echo,
        )
        if result.interrupted:
            raise KeyboardInterrupt

    stage.run(
        "search + verify + report",
        search_verify_report,
        done=(search / "report" / "index.html").exists(),
    )
    stage.run(
        "export",
        lambda: export_model(
            str(supernet),
            pick_from_search(search, "best"),
            model,
            str(data),
            devices=(DEVICE,),
            test_limit=config.test_limit,
            echo=echo,
        ),
        done=(model / "card.json").exists(),
    )
    card = json.loads((model / "card.json").read_text())
    translations = stage.run(
        "translate", lambda: _translate_samples(OnnxTranslator(model), data, config, root)
    )
    for source, hypothesis, reference in translations:
        echo(f"  es: {source}\n  mt: {hypothesis}\n  en: {reference}")
    summary = {
        "stages_seconds": stage.record["stages"],
        "total_seconds": sum(stage.record["stages"].values()),
        "budget_ms": budget,
        "model": {
            "arch": card["arch"],
            "params": card["params"],
            "test_bleu": card["bleu"]["onnxruntime"],
            "test_sentences": card["bleu"]["sentences"],
            "latency_ms": card["latency"][DEVICE]["latency_ms"],
            "device": DEVICE,
        },
        "report": str(search / "report" / "index.html"),
    }
    stage.record["summary"] = summary
    stage.path.write_text(json.dumps(stage.record, indent=1))
    return summary


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _training_finished(run: Path, minutes: float) -> bool:
    from mos_search.checkpoint import read_state

    if not (run / "checkpoints" / "latest").exists():
        return False
    return read_state(run)["elapsed_seconds"] >= minutes * 60


def _train_or_resume(config: Any, train: Callable, echo: Callable[[str], None]) -> None:
    resume = (Path(config.out) / "checkpoints" / "latest").exists()
    if resume:
        echo("continuing the interrupted training run")
    result = train(config, resume=resume)
    if result.interrupted:
        raise KeyboardInterrupt


def _default_budget(dataset: Path, search: Path) -> float:
    """The median measured latency (about half the space meets it); a started search keeps its."""
    from latency.dataset import drift_corrected_ms, fit_drift_elasticity, read_records

    settings = search / "search.json"
    if settings.exists():
        return next(iter(json.loads(settings.read_text())["max_latency_ms"].values()))
    records = read_records(dataset)
    corrected = drift_corrected_ms(records, fit_drift_elasticity(records))
    return round(statistics.median(corrected), 1)


def _translate_samples(translator: Any, data: Path, config: DemoConfig, root: Path) -> list:
    from mos_search.data.corpus import open_corpus

    pairs = open_corpus(data).pairs("test")
    step = max(len(pairs) // config.translate_sentences, 1)
    chosen = pairs[::step][: config.translate_sentences]
    hypotheses = translator.translate([s for s, _ in chosen], beam=5)
    rows = [(s, h, r) for (s, r), h in zip(chosen, hypotheses)]
    (root / "translations.txt").write_text(
        "".join(f"es: {s}\nmt: {h}\nen: {r}\n\n" for s, h, r in rows)
    )
    return rows
