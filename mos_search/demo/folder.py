"""The demo's sizes and its run folder: where each stage reads and writes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mos_search.errors import ConfigError
from mos_search.files import read_json
from mos_search.search.config import DEFAULT_LATENCY_CONFIDENCE, SearchConfig
from mos_search.settings import naming_file

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
    return Path(__file__).resolve().parents[2] / "pretrained" / "cpu-small-neuron"


class DemoFolder:
    """A demo's configuration (a pretrained supernet's card fixes its space and vocabulary) and
    the paths of its run folder; `budget_ms` is set once the profile exists."""

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
        self._budget_ms: float | None = None

    def budget_ms(self) -> float:
        """The search's latency budget: the `budget_quantile` of the profiled architectures'
        drift-corrected latencies (the median: about half the space meets it), or the budget a
        started search keeps; said once, when first asked (the profile must exist)."""
        if self._budget_ms is None:
            self._budget_ms = default_budget_ms(
                self.dataset, self.search, self.config.budget_quantile
            )
            self.echo(
                f"latency budget: {self._budget_ms:.1f} ms (quantile "
                f"{self.config.budget_quantile:g} of the profiled archs' measured latencies), "
                f"met with confidence {self.config.latency_confidence:g}"
            )
        return self._budget_ms

    def check_same_demo(self) -> None:
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


def default_budget_ms(dataset: Path, search: Path, quantile: float = 0.5) -> float:
    """A quantile of the measured latencies of `dataset`; a started search keeps its budget."""
    import numpy as np

    from latency.dataset import drift_corrected_ms, fit_drift_elasticity, read_records

    settings = search / "search.json"
    if settings.exists():
        with naming_file(settings):
            config = SearchConfig.from_dict(read_json(settings))
        return next(b.limit for b in config.budgets if b.metric == "latency")
    records = read_records(dataset)
    corrected = drift_corrected_ms(records, fit_drift_elasticity(records))
    return round(float(np.quantile(corrected, quantile)), 1)
