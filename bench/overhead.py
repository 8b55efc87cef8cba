"""Training-step cost of MoS (layer-/neuron-wise) against plain weight sharing, same archs, one run.

One timed run of a mode is a sweep: forward + backward of one batch for each sampled architecture
in turn (so every step pays the switch to a new shape, as in training). The three modes alternate
run by run (shared, layer, neuron, shared, ...; warm-ups likewise) through the measuring protocol
(`latency.protocol.measure_interleaved`), so drift hits every mode alike; each ratio layer/shared
and neuron/shared is the median of the per-round ratios, with its order-statistic interval.
Prints a table; writes JSON.

    python bench/overhead.py --archs 6 --repeats 9 --tokens 4096
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
from pathlib import Path

# bench/latency.py shares its name with the `latency` package: keep this folder from shadowing it.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from devices import DeviceProfile, open_device  # noqa: E402
from latency.protocol import measure_interleaved, paired_ratio  # noqa: E402
from mos_search import Supernet, SupernetConfig, load_space  # noqa: E402
from mos_search.constants import MODES  # noqa: E402


def sweep(net: Supernet, archs: list, src: torch.Tensor, prev: torch.Tensor, target: torch.Tensor):
    """A callable running one forward + backward pass for each architecture in turn."""

    def run() -> None:
        for arch in archs:
            net.zero_grad(set_to_none=True)
            logits = net(src, prev, arch)
            loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), label_smoothing=0.1)
            loss.backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="cpu-small")
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--archs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=4096, help="target tokens per batch")
    parser.add_argument("--length", type=int, default=32, help="sentence length (src and tgt)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bench/results/overhead.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    space = load_space(args.space)
    rng = random.Random(0)
    archs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(args.archs - 2)]
    nets = {}
    for mode in MODES:
        torch.manual_seed(0)
        nets[mode] = Supernet(SupernetConfig(space=space, mode=mode, vocab_size=args.vocab)).train()
    batch = max(1, args.tokens // args.length)
    g = torch.Generator().manual_seed(0)
    src = torch.randint(4, args.vocab, (batch, args.length), generator=g)
    tgt = torch.randint(4, args.vocab, (batch, args.length + 1), generator=g)
    prev, target = tgt[:, :-1], tgt[:, 1:]

    # the protocol's settings for this comparison (the clock of a CPU device; nothing is loaded)
    profile = DeviceProfile(
        name="overhead",
        backend="torch-cpu",
        threads=args.threads,
        warmups=1,
        repeats=args.repeats,
        retries=0,
    )
    clock = open_device(profile)
    runs = [(clock, sweep(nets[mode], archs, src, prev, target)) for mode in MODES]
    measured = dict(zip(MODES, measure_interleaved(runs, profile)))
    ratios = {m: paired_ratio(measured["shared"], measured[m], profile.confidence) for m in MODES}

    print(
        f"{batch} x {args.length} tokens, vocab {args.vocab}, {args.threads} thread(s), "
        f"{len(archs)} archs per sweep, {args.repeats} sweeps per mode, modes alternated"
    )
    print(
        f"{'mode':<8}{'sweep s':>9}{'low':>8}{'high':>8}{'/shared':>9}{'interval':>16}{'flag':>6}"
    )
    for mode in MODES:
        m, r = measured[mode], ratios[mode]
        print(
            f"{mode:<8}{m.seconds:>9.2f}{m.low_seconds:>8.2f}{m.high_seconds:>8.2f}"
            f"{r.ratio:>9.3f}{f'[{r.ratio_low:.3f}, {r.ratio_high:.3f}]':>16}{m.flagged!s:>6}"
        )
    params = {m: sum(p.numel() for p in nets[m].parameters()) for m in MODES}
    print("supernet parameters: " + ", ".join(f"{m} {params[m] / 1e6:.2f} M" for m in MODES))

    result = {
        "space": args.space,
        "vocab": args.vocab,
        "batch": batch,
        "length": args.length,
        "threads": args.threads,
        "repeats": args.repeats,
        "archs": [a.to_dict() for a in archs],
        "sweep": {mode: measured[mode].to_dict() for mode in MODES},
        "ratio_layer_shared": ratios["layer"].ratio,
        "ratio_neuron_shared": ratios["neuron"].ratio,
        "ratio_interval": {m: [ratios[m].ratio_low, ratios[m].ratio_high] for m in MODES},
        "ratio_coverage": ratios["layer"].ratio_coverage,
        "supernet_parameters": params,
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
