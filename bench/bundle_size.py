"""Bundle sizes for remote measuring: both graphs as exported vs the bundle folder, whose weights
the graphs share (the token table) are stored once (`latency.bundles.share_weights`).

For the smallest and largest members of a space and `--archs` uniform samples (seeded): the
bytes of `encoder.onnx` + `decoder_step.onnx` as exported, and of the bundle folder
(`write_bundle`: graphs, `shared.bin`, `bundle.json`). Prints a table and writes JSON. Sizes do
not depend on load: run it beside anything.

    python bench/bundle_size.py --space cpu-small --archs 20
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

# bench/latency.py shares its name with the `latency` package: keep this folder off the path.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from latency.bundles import write_bundle  # noqa: E402
from mos_search.costs.profiling import ArchModels, translation_bundle  # noqa: E402
from mos_search.space import load_space  # noqa: E402


def sizes(models: ArchModels, arch, work: Path) -> dict:
    bundle = translation_bundle(models.model(arch), "onnx", work / "graphs")
    exported = sum(Path(p).stat().st_size for p in bundle.onnx.values())
    folder = work / "bundles" / write_bundle(bundle, work / "bundles")
    written = sum(p.stat().st_size for p in folder.iterdir())
    return {"exported_mb": exported / 1e6, "bundle_mb": written / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="cpu-small")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/results/bundle-size.json")
    args = parser.parse_args()
    space = load_space(args.space)
    models = ArchModels(space, args.vocab_size)
    rng = random.Random(args.seed)
    named = {"smallest": space.smallest(), "largest": space.largest()}
    named |= {f"sample {i}": space.sample(rng) for i in range(args.archs)}
    rows = {}
    for name, arch in named.items():
        with tempfile.TemporaryDirectory() as tmp:
            rows[name] = sizes(models, arch, Path(tmp))
    samples = [r for n, r in rows.items() if n.startswith("sample")]
    ratio = [r["bundle_mb"] / r["exported_mb"] for r in samples]
    summary = {
        "median_exported_mb": statistics.median(r["exported_mb"] for r in samples),
        "median_bundle_mb": statistics.median(r["bundle_mb"] for r in samples),
        "median_ratio": statistics.median(ratio),
        "min_ratio": min(ratio),
        "max_ratio": max(ratio),
    }
    print(f"{args.space} at vocabulary {args.vocab_size}: MB exported -> MB in the bundle")
    for name in ("smallest", "largest"):
        r = rows[name]
        print(f"  {name:<9} {r['exported_mb']:6.1f} -> {r['bundle_mb']:6.1f}")
    print(
        f"  {len(samples)} samples: median {summary['median_exported_mb']:.1f} -> "
        f"{summary['median_bundle_mb']:.1f} (ratio {summary['median_ratio']:.3f}, "
        f"{summary['min_ratio']:.3f}-{summary['max_ratio']:.3f})"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows, "summary": summary}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
