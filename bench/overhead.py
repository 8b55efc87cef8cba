"""Training-step cost of MoS (layer-/neuron-wise) against plain weight sharing, same archs, one run.

Times forward + backward of one batch for the same sampled architectures in the three modes,
interleaved (arch by arch, mode by mode, repeat by repeat, the mode order rotated every repeat)
so machine drift and the cost of switching shapes hit every mode alike.
Prints a table and the ratios layer/shared and neuron/shared; writes JSON.

    python bench/overhead.py --archs 6 --repeats 5 --tokens 4096
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mos_search import Supernet, SupernetConfig, load_space
from mos_search.constants import MODES


def step(net: Supernet, arch, src: torch.Tensor, prev: torch.Tensor, target: torch.Tensor) -> float:
    """Seconds for one forward + backward pass."""
    net.zero_grad(set_to_none=True)
    start = time.perf_counter()
    logits = net(src, prev, arch)
    loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), label_smoothing=0.1)
    loss.backward()
    return time.perf_counter() - start


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

    for mode in MODES:  # warm-up: allocator, skeleton cache
        step(nets[mode], archs[0], src, prev, target)
    times = {mode: [[] for _ in archs] for mode in MODES}
    for r in range(args.repeats):
        order = MODES[r % 3 :] + MODES[: r % 3]  # each mode runs first after an arch switch
        for i, arch in enumerate(archs):
            for mode in order:
                times[mode][i].append(step(nets[mode], arch, src, prev, target))

    medians = {mode: [statistics.median(t) for t in times[mode]] for mode in MODES}
    totals = {mode: sum(medians[mode]) for mode in MODES}
    print(
        f"{batch} x {args.length} tokens, vocab {args.vocab}, {args.threads} thread(s), "
        f"median of {args.repeats} repeats per arch (ms)"
    )
    print(
        f"{'arch':<10}" + "".join(f"{m:>10}" for m in MODES) + f"{'layer/sh':>10}{'neuron/sh':>10}"
    )
    for i in range(len(archs)):
        row = [medians[m][i] * 1000 for m in MODES]
        label = ["largest", "smallest"][i] if i < 2 else f"sample{i - 1}"
        print(
            f"{label:<10}"
            + "".join(f"{v:>10.1f}" for v in row)
            + f"{row[1] / row[0]:>10.3f}{row[2] / row[0]:>10.3f}"
        )
    ratio_layer, ratio_neuron = (
        totals["layer"] / totals["shared"],
        totals["neuron"] / totals["shared"],
    )
    print(
        f"{'total':<10}"
        + "".join(f"{totals[m] * 1000:>10.1f}" for m in MODES)
        + f"{ratio_layer:>10.3f}{ratio_neuron:>10.3f}"
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
        "median_seconds": medians,
        "total_seconds": totals,
        "ratio_layer_shared": ratio_layer,
        "ratio_neuron_shared": ratio_neuron,
        "supernet_parameters": params,
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
