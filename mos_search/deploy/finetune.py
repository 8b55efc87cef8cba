"""Fine-tune one extracted sub-network alone (the paper's short retraining step), then re-score.

The standalone model starts from the weights the supernet generates for the architecture and
trains with the usual loop (checkpoints, resume, Ctrl-C) for a wall-clock budget; test BLEU
before and after, and the BLEU gained per minute, are written to `finetune.json` in the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mos_search.errors import CheckpointError
from mos_search.files import check_writable_dir, write_json_atomic
from mos_search.models.checkpoint import read_state, resolve_checkpoint


def finetune(
    checkpoint: str,
    arch_dict: dict[str, Any],
    out: str | Path,
    *,
    data: str | None = None,
    minutes: float = 5.0,
    lr: float = 3e-4,
    max_tokens: int = 4096,
    threads: int = 1,
    test_limit: int | None = 300,
    beam: int = 5,
    resume: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the extracted `arch` for `minutes`; returns (and saves) BLEU before and after.

    Writes `arch.json` into `out` first, so the run can be exported with `--arch OUT/arch.json`.
    """
    from mos_search.oracle.scoring import Oracle
    from mos_search.training.config import TrainConfig
    from mos_search.training.train import train

    check_writable_dir(out)  # before scoring and training, not at the first checkpoint
    if not resume and Path(out, "checkpoints").exists():
        raise CheckpointError(f"{out} already holds a run; add --resume or choose another --out")
    Path(out).mkdir(parents=True, exist_ok=True)
    Path(out, "arch.json").write_text(json.dumps(arch_dict) + "\n")
    source = resolve_checkpoint(checkpoint)
    data = data or read_state(source).get("train_config", {}).get("data")
    before_oracle = Oracle(source, data, "test", test_limit, threads=threads)
    arch = before_oracle.space.arch_from_dict(arch_dict)
    before = before_oracle.bleu(arch, beam)
    echo(f"before fine-tuning: test BLEU {before.score:.2f} ({len(before_oracle.data)} sentences)")
    config = TrainConfig(
        data=str(data),
        out=str(out),
        space=before_oracle.space.name,
        arch=arch.to_dict(),
        init_from=str(source),
        lr=lr,
        warmup=50,
        max_tokens=max_tokens,
        max_steps=10**9,
        minutes=minutes,
        valid_every=0,
        save_every=50,
        threads=threads,
    )
    result = train(config, resume=resume)
    trained_minutes = read_state(result.checkpoint)["elapsed_seconds"] / 60
    if result.interrupted:
        echo(f"stopped after {trained_minutes:.1f} min; add --resume to continue")
    after = Oracle(result.checkpoint, data, "test", test_limit, threads=threads).bleu(arch, beam)
    report = {
        "arch": arch.to_dict(),
        "from": str(source),
        "steps": result.step,
        "minutes": trained_minutes,
        "test_sentences": len(before_oracle.data),
        "beam": beam,
        "bleu_before": before.score,
        "bleu_after": after.score,
        "bleu_gained_per_minute": (after.score - before.score) / max(trained_minutes, 1e-9),
        "signature": after.signature,
        "interrupted": result.interrupted,
    }
    write_json_atomic(Path(out, "finetune.json"), report)
    echo(
        f"after {trained_minutes:.1f} min ({result.step} steps): test BLEU {after.score:.2f} "
        f"({report['bleu_gained_per_minute']:+.3f} BLEU/min)"
    )
    return report
