"""Profiling over SSH against profiling here: records per minute, and the agent's installed size.

Both sides run on this machine: the "target" is a throwaway `sshd` this script starts on
127.0.0.1 (a free port, fresh host and user keys, host keys checked through a generated
known_hosts) whose Python is the agent's venv (no torch). Each run is one whole
`mos-search profile` command, timed from start to exit: local runs export and measure; remote
runs export the bundles, copy the agent's code and the bundles, measure there and stream the
records back. Every run measures the same architectures (same --space, -n, --seed,
--vocab-size) into a fresh dataset, and every remote run gets a fresh --remote-dir (nothing
cached on the target). The two alternate ABBA (local, remote; remote, local; ...) so drift hits
both, after one untimed run of each (-n 1) that warms the disk cache and the interpreters' files.
Goal: remote/local records per minute >= 0.9.

Also reports the installed size of the agent (site-packages of its venv) against the full
toolkit's (site-packages of this interpreter's venv), pip and setuptools left out of both.

Prints a table; writes JSON.

    python bench/remote.py --space cpu-small -n 8 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

# bench/latency.py shares its name with the `latency` package: keep this folder off the path.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from latency.environment import environment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' throwaway sshd (tests/sshd.py)
from sshd import SshdUnavailable, start_sshd  # noqa: E402

TOOLING = ("pip", "setuptools", "wheel", "_distutils_hack", "pkg_resources", "distutils-precedence")


def count_records(dataset: Path) -> int:
    if not dataset.is_file():
        return 0
    return sum(1 for line in dataset.read_text().splitlines() if line.strip())


def latencies(dataset: Path) -> dict[str, float]:
    """latency_ms by architecture (its JSON, sorted keys)."""
    found = {}
    for line in dataset.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            found[json.dumps(record["arch"], sort_keys=True)] = record["latency_ms"]
    return found


def site_packages_bytes(venv: Path) -> int:
    """Bytes on disk under the venv's site-packages, pip and setuptools left out."""
    total = 0
    for site in venv.glob("lib/python3*/site-packages"):
        for entry in site.iterdir():
            if entry.name.startswith(TOOLING):
                continue
            files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
            total += sum(p.lstat().st_blocks * 512 for p in files if not p.is_symlink())
    return total


def run(command: list[str], log: Path) -> float:
    """Run `command`, output to `log`; its wall seconds (exits on failure)."""
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{log.read_text()[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="cpu-small")
    parser.add_argument("-n", type=int, default=8, help="architectures per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--device", default="onnxruntime-cpu")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of one local, one remote")
    parser.add_argument(
        "--warmup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="first one untimed run of each, -n 1",
    )
    parser.add_argument(
        "--agent-venv",
        default=str(ROOT / ".venv-agent"),
        help="the target's venv (pip install ./agent; `make setup` makes .venv-agent)",
    )
    parser.add_argument("--work", default="bench/work/remote")
    parser.add_argument("--out", default="bench/results/remote/remote.json")
    args = parser.parse_args()

    mos_search = Path(sys.executable).with_name("mos-search")
    agent_venv = Path(args.agent_venv).resolve()
    agent_python = agent_venv / "bin" / "python"
    if not agent_python.is_file():
        sys.exit(f"no {agent_python}: make setup, or: python3 -m venv V; V/bin/pip install ./agent")
    has_torch = subprocess.run([str(agent_python), "-c", "import torch"], capture_output=True)
    if has_torch.returncode == 0:
        sys.exit(f"{agent_python} can import torch: the agent's venv should not have it")
    work = (ROOT / args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    same = [
        "profile",
        "--device",
        args.device,
        "--space",
        args.space,
        "--seed",
        str(args.seed),
        "--vocab-size",
        str(args.vocab_size),
    ]

    runs: list[dict] = []
    try:
        sshd = start_sshd(work / "sshd")
    except SshdUnavailable as exc:
        sys.exit(f"cannot start a throwaway sshd: {exc}")
    try:

        def profile_command(name: str, where: str, count: int) -> tuple[list[str], Path]:
            dataset = work / name / "latency.jsonl"
            dataset.parent.mkdir()
            command = [str(mos_search), *same, "-n", str(count), "--out", str(dataset)]
            if where == "remote":
                command += [
                    "--remote",
                    sshd.url,
                    "--remote-python",
                    str(agent_python),
                    "--remote-dir",
                    str(work / name / "target"),
                    "--ssh-config",
                    str(sshd.config),
                ]
            return command, dataset

        if args.warmup:
            for where in ("local", "remote"):
                print(f"warm-up: {where} -n 1 ...", flush=True)
                command, _ = profile_command(f"warmup-{where}", where, 1)
                run(command, work / f"warmup-{where}" / "profile.log")
        for round_index in range(args.rounds):
            order = ("local", "remote") if round_index % 2 == 0 else ("remote", "local")
            for where in order:
                name = f"{round_index}-{where}"
                command, dataset = profile_command(name, where, args.n)
                print(f"round {round_index + 1}/{args.rounds}: {where} ...", flush=True)
                seconds = run(command, work / name / "profile.log")
                records = count_records(dataset)
                runs.append(
                    {
                        "round": round_index,
                        "where": where,
                        "seconds": seconds,
                        "records": records,
                        "records_per_min": records / seconds * 60,
                        "command": command,
                        "dataset": os.path.relpath(dataset, ROOT),
                    }
                )
                print(f"  {records} records in {seconds:.1f} s", flush=True)

    finally:
        sshd.stop()
    rate = {w: [r["records_per_min"] for r in runs if r["where"] == w] for w in ("local", "remote")}
    per_round = [
        next(r for r in runs if r["round"] == i and r["where"] == "remote")["records_per_min"]
        / next(r for r in runs if r["round"] == i and r["where"] == "local")["records_per_min"]
        for i in range(args.rounds)
    ]
    total = {w: sum(r["records"] for r in runs if r["where"] == w) for w in rate}
    seconds = {w: sum(r["seconds"] for r in runs if r["where"] == w) for w in rate}
    ratio = (total["remote"] / seconds["remote"]) / (total["local"] / seconds["local"])
    lat_ratios = []  # remote/local latency of each arch, round by round: same machine, so ~1
    for i in range(args.rounds):
        local = latencies(work / f"{i}-local" / "latency.jsonl")
        remote = latencies(work / f"{i}-remote" / "latency.jsonl")
        lat_ratios += [remote[k] / local[k] for k in local if k in remote]

    agent_bytes = site_packages_bytes(agent_venv)
    full_bytes = site_packages_bytes(Path(sys.prefix))

    print(f"\n{args.space} -n {args.n}, {args.rounds} round(s) ABBA, device {args.device}")
    print(f"{'run':<10}{'records':>8}{'seconds':>9}{'rec/min':>9}")
    for r in runs:
        label = f"{r['round'] + 1}-{r['where']}"
        print(f"{label:<10}{r['records']:>8}{r['seconds']:>9.1f}{r['records_per_min']:>9.2f}")
    print(
        f"remote/local records per minute: {ratio:.3f} (all runs), per round "
        f"{', '.join(f'{x:.3f}' for x in per_round)}; goal >= 0.9: "
        f"{'met' if ratio >= 0.9 else 'NOT met'}"
    )
    if lat_ratios:
        print(
            f"remote/local latency per arch: median {statistics.median(lat_ratios):.3f} "
            f"(min {min(lat_ratios):.3f}, max {max(lat_ratios):.3f}, {len(lat_ratios)} pairs)"
        )
    print(
        f"installed size (site-packages, without pip/setuptools): agent {agent_bytes / 2**20:.0f} "
        f"MiB, full toolkit {full_bytes / 2**20:.0f} MiB, ratio {agent_bytes / full_bytes:.3f}"
    )

    ssh_version = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
    result = {
        "command": [Path(sys.executable).name, *sys.argv],
        "commit": commit.stdout.strip() or None,
        "uncommitted_changes": bool(dirty.stdout.strip()),
        "args": vars(args),
        "machine": {**environment(), "ssh": ssh_version},
        "runs": runs,
        "records_per_min": {
            w: {"all_runs": total[w] / seconds[w] * 60, "median_run": statistics.median(rate[w])}
            for w in rate
        },
        "ratio_remote_local": ratio,
        "ratio_per_round": per_round,
        "goal": 0.9,
        "goal_met": ratio >= 0.9,
        "latency_ratio_remote_local": (
            {
                "median": statistics.median(lat_ratios),
                "min": min(lat_ratios),
                "max": max(lat_ratios),
                "pairs": len(lat_ratios),
            }
            if lat_ratios
            else None
        ),
        "installed_bytes": {
            "agent": agent_bytes,
            "agent_venv": str(agent_venv),
            "full_toolkit": full_bytes,
            "full_venv": sys.prefix,
            "ratio": agent_bytes / full_bytes,
            "left_out": list(TOOLING),
            "note": "site-packages only; mos_search itself is installed editable (its source "
            "and shipped files are not in site-packages)",
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
