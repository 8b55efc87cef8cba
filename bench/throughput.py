"""Supernet training throughput on the CPU: today's float32 path against faster ones, in one run.

Configurations (each `mos-search train`'s own step, `Trainer.train_step`, on cpu-small neuron):

    fp32-torch-dropout  float32, PyTorch's dropout (the path before issue 26)
    fp32                float32, the 4-masks-per-draw CPU dropout (models/dropout.py)
    bf16                bf16 autocast (attention in float32) + that dropout; only on a CPU with
                        native bf16 (AVX512-BF16 or AMX), else skipped with the reason
    bf16-1-thread       the same on one intra-op thread (thread setting)

Phase 1, speed: rounds of `--steps` optimizer steps per configuration, the order reversed every
other round (ABBA), every configuration of a round on the same batches and architectures (the
trainer's data position and step are reset between them). Target tokens per second per round;
each configuration's speed-up is the median of its per-round ratios to the first one, with the
order-statistic interval of the median (latency.protocol.median_interval).

Phase 2, quality at equal tokens: the first configuration and the fastest one each train the same
start (`--init`, or a fresh supernet) for `--quality-steps` steps with the same seed (same
batches, architectures and dropout seeds), then score the validation split: loss per target
token of the largest and smallest members, and the paired difference (fast - baseline) with a
95% bootstrap interval over validation sentences (scipy). The interval covers the choice of
sentences, not training noise; a second `--seeds` value adds a seed-to-seed comparison.

Also the padding share of the training batches: today's length-bucketed batches
(data.batches.token_batches) against batches of randomly ordered sentences under the same token
budget.

    python bench/throughput.py --rounds 5 --steps 6 --quality-steps 100

Run it alone: anything else on the 2 cores skews both phases. Prints a table; writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

# bench/latency.py shares its name with the `latency` package: keep this folder from shadowing it.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from latency.environment import environment  # noqa: E402
from latency.protocol import median_interval  # noqa: E402
from mos_search.data.batches import collate, token_batches  # noqa: E402
from mos_search.models.dropout import reference_dropout  # noqa: E402
from mos_search.models.losses import sentence_nlls  # noqa: E402
from mos_search.training.config import TrainConfig  # noqa: E402
from mos_search.training.distributed import cpu_has_native_bf16  # noqa: E402
from mos_search.training.tasks import forward_fn  # noqa: E402
from mos_search.training.train import Trainer  # noqa: E402

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Setting:
    """One way to run the training step."""

    name: str
    bf16: bool
    torch_dropout: bool = False
    threads: int = 2


def settings() -> tuple[list[Setting], list[str]]:
    """The settings this CPU can run, and a line for each one skipped."""
    chosen = [Setting("fp32-torch-dropout", False, torch_dropout=True), Setting("fp32", False)]
    skipped = []
    if cpu_has_native_bf16():
        chosen += [Setting("bf16", True), Setting("bf16-1-thread", True, threads=1)]
    else:
        capability = torch.backends.cpu.get_cpu_capability()
        skipped.append(f"bf16: this CPU ({capability}) has no native bf16; emulated bf16 is slower")
    return chosen, skipped


@contextlib.contextmanager
def applied(trainer: Trainer, setting: Setting):
    """The trainer runs its steps as `setting` says inside the block."""
    trainer.bf16 = setting.bf16
    torch.set_num_threads(setting.threads)
    with reference_dropout() if setting.torch_dropout else contextlib.nullcontext():
        yield


def timed_steps(trainer: Trainer, steps: int) -> tuple[float, int]:
    """(seconds, target tokens) of `steps` training steps."""
    tokens = 0
    started = time.perf_counter()
    for _ in range(steps):
        tokens += trainer.train_step()[2]
    return time.perf_counter() - started, tokens


def speed_phase(trainer: Trainer, chosen: list[Setting], rounds: int, steps: int) -> dict:
    """Per-round tokens/s of each setting on the same batches; ratios to the first."""
    for setting in chosen:  # warm-up outside the timed rounds
        with applied(trainer, setting):
            timed_steps(trainer, 2)
    speeds: dict[str, list[float]] = {s.name: [] for s in chosen}
    for index in range(rounds):
        position = (trainer.step, trainer.epoch, trainer.batch_in_epoch)
        order = chosen if index % 2 == 0 else list(reversed(chosen))
        for setting in order:
            trainer.step, trainer.epoch, trainer.batch_in_epoch = position
            with applied(trainer, setting):
                seconds, tokens = timed_steps(trainer, steps)
            speeds[setting.name].append(tokens / seconds)
        print(
            f"round {index + 1}/{rounds}: "
            + ", ".join(f"{name} {values[-1]:,.0f}" for name, values in speeds.items())
            + " tok/s",
            flush=True,
        )
    base = speeds[chosen[0].name]
    out = {}
    for setting in chosen:
        values = speeds[setting.name]
        ratios = [v / b for v, b in zip(values, base)]
        speed_interval = median_interval(values, CONFIDENCE)
        ratio_interval = median_interval(ratios, CONFIDENCE)
        out[setting.name] = {
            "tokens_per_s": statistics.median(values),
            "tokens_per_s_interval": [speed_interval.low, speed_interval.high],
            "speedup": statistics.median(ratios),
            "speedup_interval": [ratio_interval.low, ratio_interval.high],
            "coverage": ratio_interval.coverage,
            "per_round_tokens_per_s": values,
            "setting": setting.__dict__,
        }
    return out


def quality_phase(config: TrainConfig, chosen: list[Setting], steps: int, seed: int) -> dict:
    """Validation NLL per sentence of the largest and smallest members after `steps` steps of
    each setting from the same start and seed."""
    scores = {}
    for setting in chosen:
        run = replace(config, out=tempfile.mkdtemp(prefix="throughput-") + "/run", seed=seed)
        trainer = Trainer(run)
        started = time.perf_counter()
        with applied(trainer, setting):
            tokens = sum(trainer.train_step()[2] for _ in range(steps))
        seconds = time.perf_counter() - started
        trainer.model.eval()
        members = {"largest": trainer.space.largest(), "smallest": trainer.space.smallest()}
        scores[setting.name] = {
            "tokens": tokens,
            "seconds": seconds,
            **{
                name: sentence_nlls(forward_fn(trainer.model, arch), trainer.task.valid_data)
                for name, arch in members.items()
            },
        }
        print(f"quality run {setting.name} (seed {seed}): {tokens:,} tokens in {seconds:.0f} s")
    return scores


def paired_difference(base: tuple[list, list], other: tuple[list, list]) -> dict:
    """Loss per token of both and the difference other - base, with a bootstrap interval over
    sentences (the same sentences in both)."""
    from scipy.stats import bootstrap

    nll_a, count = np.asarray(base[0]), np.asarray(base[1], dtype=float)
    nll_b = np.asarray(other[0])

    def difference(a, b, n):
        return (b.sum() - a.sum()) / n.sum()

    result = bootstrap(
        (nll_a, nll_b, count),
        difference,
        paired=True,
        vectorized=False,
        n_resamples=2000,
        confidence_level=CONFIDENCE,
        method="percentile",
        random_state=np.random.default_rng(0),
    )
    return {
        "base": float(nll_a.sum() / count.sum()),
        "other": float(nll_b.sum() / count.sum()),
        "difference": float(difference(nll_a, nll_b, count)),
        "interval": [float(result.confidence_interval.low), float(result.confidence_interval.high)],
    }


def padding_shares(trainer: Trainer, seed: int) -> dict:
    """Share of padded positions (source and target) in an epoch's batches: bucketed by length
    (today) and with sentences in random order under the same token budget."""
    data, budget = trainer.task.train_data, trainer.config.max_tokens

    def share(batches: list[list[int]]) -> float:
        padded = real = 0
        for indices in batches:
            batch = collate(data, indices)
            for tensor in (batch.src, batch.target):
                padded += tensor.numel()
                real += int((tensor != 0).sum())
        return 1 - real / padded

    bucketed = token_batches(data, budget, seed, 0)
    lengths = data.lengths().tolist()
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    unsorted, current, longest = [], [], 0
    for i in order:
        if current and max(longest, lengths[i]) * (len(current) + 1) > budget:
            unsorted.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, lengths[i])
    if current:
        unsorted.append(current)
    return {
        "bucketed": share(bucketed),
        "random_order": share(unsorted),
        "batches_bucketed": len(bucketed),
        "batches_random_order": len(unsorted),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/bible")
    parser.add_argument("--space", default="cpu-small")
    parser.add_argument("--init", default="pretrained/cpu-small-neuron", help="'' for a fresh one")
    parser.add_argument("--max-tokens", type=int, default=2048)
    parser.add_argument("--random-archs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6, help="steps per setting per round")
    parser.add_argument("--quality-steps", type=int, default=100)
    parser.add_argument("--seeds", default="1", help="comma-separated seeds of phase 2")
    parser.add_argument(
        "--quality-pair",
        help="BASE,OTHER: the settings phase 2 compares [default: the first and the fastest]; "
        "fp32,bf16 isolates precision (the same dropout masks)",
    )
    parser.add_argument("--out", default="bench/results/throughput.json")
    args = parser.parse_args()

    config = TrainConfig(
        data=args.data,
        out="",
        space=args.space,
        mode="neuron",
        init_from=args.init or None,
        random_archs=args.random_archs,
        max_tokens=args.max_tokens,
        lr=2e-3,
        warmup=100,
        threads=2,
        valid_every=0,
        max_steps=10**6,
        save_every=10**6,
    )
    chosen, skipped = settings()
    for line in skipped:
        print(f"skipped {line}")
    trainer = Trainer(replace(config, out=tempfile.mkdtemp(prefix="throughput-") + "/run"))
    padding = padding_shares(trainer, config.seed)
    speed = speed_phase(trainer, chosen, args.rounds, args.steps) if args.rounds else {}
    by_name = {s.name: s for s in chosen}
    if args.quality_pair:
        first, fastest = (by_name[name] for name in args.quality_pair.split(","))
    else:
        first = chosen[0]
        fastest = max(chosen[1:], key=lambda s: speed[s.name]["speedup"])
    quality = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        scores = quality_phase(config, [first, fastest], args.quality_steps, seed)
        base, fast = scores[first.name], scores[fastest.name]
        quality[str(seed)] = {
            member: paired_difference(base[member], fast[member])
            for member in ("largest", "smallest")
        }
        quality[str(seed)]["seconds"] = {
            chosen[0].name: base["seconds"],
            fastest.name: fast["seconds"],
        }
    env = environment()
    result = {
        "command": " ".join(["python", *sys.argv]),
        "cpu": env.get("cpu") or platform.processor(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": cpu_has_native_bf16(),
        "torch": torch.__version__,
        "skipped": skipped,
        "padding_share": padding,
        "speed": speed,
        "speed_base": chosen[0].name,
        "quality_base": first.name,
        "fastest": fastest.name,
        "init": args.init or None,
        "quality_steps": args.quality_steps,
        "quality": quality,
        "environment": env,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print_table(result, first.name)


def print_table(result: dict, base: str) -> None:
    """The speed and quality tables."""
    print(
        f"\nCPU: {result['cpu']} ({result['cpu_capability']}, native bf16 {result['native_bf16']})"
    )
    pad = result["padding_share"]
    print(
        f"padding share: {pad['bucketed']:.1%} bucketed by length (today), "
        f"{pad['random_order']:.1%} in random order"
    )
    print(f"\n| setting | target tokens/s [95%] | speed-up vs {result['speed_base']} [95%] |")
    print("|---|---|---|")
    for name, row in result["speed"].items():
        low, high = row["tokens_per_s_interval"]
        slow, shigh = row["speedup_interval"]
        print(
            f"| {name} | {row['tokens_per_s']:,.0f} [{low:,.0f}, {high:,.0f}] | "
            f"{row['speedup']:.2f}x [{slow:.2f}, {shigh:.2f}] |"
        )
    fast = result["fastest"]
    start = result["init"] or "a fresh supernet"
    steps = result["quality_steps"]
    print(f"\nvalidation loss per target token after {steps} steps from {start}, same seed:")
    print(f"| seed | member | {base} | {fast} | {fast} - {base} [95%, over sentences] |")
    print("|---|---|---|---|---|")
    for seed, members in result["quality"].items():
        for member in ("largest", "smallest"):
            row = members[member]
            low, high = row["interval"]
            print(
                f"| {seed} | {member} | {row['base']:.4f} | {row['other']:.4f} | "
                f"{row['difference']:+.4f} [{low:+.4f}, {high:+.4f}] |"
            )


if __name__ == "__main__":
    main()
