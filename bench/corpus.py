"""Large corpora: training data tokenised into memory vs read from the memory-mapped token store.

Builds a big corpus folder by repeating the default corpus's training split `--copies` times
(its tokenizer kept, so no SentencePiece training), tokenises it once into `tokens/` (timed: the
one pass `mos-search data` makes), then in two fresh processes opens the training split the two
ways a training run can: tokenised into memory (`encode_split`) and memory-mapped
(`open_training_split`). For each: time to open, peak resident memory added, and the time to
collate 200 random batches. Prints a table with the ratios and writes JSON.

    python bench/corpus.py --data data/bible --copies 32
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

PROBE = r"""
import json, random, sys, time
from pathlib import Path

def kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])

from mos_search.data.batches import collate, encode_split, token_batches
from mos_search.data.corpus import open_corpus
from mos_search.data.tokenized import open_training_split
from mos_search.data.tokenizer import Tokenizer

root, how = sys.argv[1], sys.argv[2]
corpus = open_corpus(root)
tokenizer = Tokenizer(corpus.tokenizer_path)
before = kib("VmRSS")
Path("/proc/self/clear_refs").write_text("5")
started = time.perf_counter()
if how == "memory":
    data = encode_split(corpus, "train", tokenizer, 128)
else:
    data = open_training_split(root, "train.es", "train.en", 128)
opened = time.perf_counter() - started
batches = token_batches(data, 4096, seed=1, epoch=0)
started = time.perf_counter()
for indices in random.Random(0).sample(batches, 200):
    collate(data, indices)
collated = time.perf_counter() - started
print(json.dumps({"pairs": len(data), "open_s": opened, "collate_200_s": collated,
                  "added_peak_mib": (kib("VmHWM") - before) / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/bible")
    parser.add_argument("--copies", type=int, default=32)
    parser.add_argument("--work", default="bench/work/corpus-big")
    parser.add_argument("--out", default="bench/results/corpus.json")
    args = parser.parse_args()
    from mos_search.data.corpus import open_corpus, tokenize_training_split, write_manifest

    source = open_corpus(args.data)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for path in source.root.iterdir():
        if path.is_file() and path.name != "corpus.json":
            shutil.copy(path, work / path.name)
    for side in (source.source_lang, source.target_lang):
        text = (source.root / f"train.{side}").read_bytes()
        with (work / f"train.{side}").open("wb") as f:
            for _ in range(args.copies):
                f.write(text)
    meta = json.loads((source.root / "corpus.json").read_text())
    meta.pop("sha256", None)
    meta["pairs"]["train"] *= args.copies
    write_manifest(work, meta)
    corpus = open_corpus(work)
    started = time.perf_counter()
    store = tokenize_training_split(corpus)
    tokenize_s = time.perf_counter() - started
    store_mib = sum(p.stat().st_size for p in store.iterdir()) / 2**20

    results = {}
    for how in ("memory", "memmap"):
        done = subprocess.run(
            [sys.executable, "-c", PROBE, str(work), how], capture_output=True, text=True
        )
        if done.returncode != 0:
            sys.exit(done.stderr)
        results[how] = json.loads(done.stdout.strip().splitlines()[-1])
    memory, mapped = results["memory"], results["memmap"]
    print(
        f"{memory['pairs']:,} training pairs ({args.copies} x {args.data}); token store "
        f"{store_mib:.0f} MiB, built in {tokenize_s:.1f} s (one pass)"
    )
    print(f"{'':<26}{'in memory':>12}{'memory-mapped':>15}{'ratio':>8}")
    for key, label in (
        ("open_s", "open (s)"),
        ("added_peak_mib", "added peak memory (MiB)"),
        ("collate_200_s", "collate 200 batches (s)"),
    ):
        ratio = memory[key] / max(mapped[key], 1e-9)
        print(f"{label:<26}{memory[key]:>12.2f}{mapped[key]:>15.2f}{ratio:>7.1f}x")
    result = {"args": vars(args), "tokenize_s": tokenize_s, "store_mib": store_mib, **results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
