"""Latency of one exported model for its card: measured here, or on an SSH target.

Either way the model's graphs are timed in `passes` passes, each interleaved with the reference
workload (the space's smallest member), and summarised by `costs.profiling.latency_entry`. On a
target (`remote`), the folder's graphs travel as a bundle and the agent measures them there
(`latency.remote`); the entry then also says where (`measured_by`) and on what (`env`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from devices import DeviceProfile, ModelBundle, load_profile
from latency.bundles import write_bundle
from latency.dataset import arch_key, read_records
from latency.jobs import Job, JobItem, request_id
from latency.profiler import measurement_from_record
from latency.protocol import Measurement, measure
from latency.remote import measure_remote
from latency.ssh import RemoteError, RemoteOptions
from mos_search.arch import Arch
from mos_search.costs.profiling import exported_runs, latency_entry, reference_bundle
from mos_search.models.transformer import count_parameters
from mos_search.space import SearchSpace


def measure_model_latency(
    device: str,
    bundle: ModelBundle,
    arch: Arch,
    space: SearchSpace,
    passes: int = 3,
    remote: RemoteOptions | None = None,
) -> dict[str, Any]:
    """The card's latency entry of `bundle` on the profile `device` (ms; median, interval,
    spread, flag, reference, pass medians), measured here or on `remote`."""
    profile = load_profile(device)
    if remote is None:
        with exported_runs(profile, [bundle], space, bundle.vocab_size) as (runs, reference):
            results = [measure(*runs[0], profile, reference) for _ in range(passes)]
        return latency_entry(profile, results)
    results, env = _measure_on_remote(remote, profile, bundle, arch, space, passes)
    return {**latency_entry(profile, results), "measured_by": str(remote.target), "env": env}


def _measure_on_remote(
    remote: RemoteOptions,
    profile: DeviceProfile,
    bundle: ModelBundle,
    arch: Arch,
    space: SearchSpace,
    passes: int,
) -> tuple[list[Measurement], dict[str, Any]]:
    """The passes' measurements of `bundle` by the agent on `remote`, and its environment."""
    with tempfile.TemporaryDirectory(prefix="mos-card-") as tmp:
        work = Path(tmp)
        digest = write_bundle(bundle, work / "bundles")
        ref = reference_bundle(space, bundle.vocab_size, "onnx", work / "graphs")
        ref_digest = write_bundle(ref, work / "bundles")
        params = count_parameters(arch, bundle.vocab_size, space.qkv_dim, space.share_embeddings)
        item = JobItem(arch.to_dict(), digest, space.features(arch), params)
        request = request_id(profile, [item.arch], passes, f"bundle:{digest}")
        extra = {"share_embeddings": space.share_embeddings, "measured_by": str(remote.target)}
        job = Job(request, profile, (item,), passes, ref_digest, extra)
        dataset = work / "measured.jsonl"
        run = measure_remote(
            remote, job, work / "bundles", dataset, {arch_key(item.arch): digest}, False
        )
        records = sorted(read_records(dataset), key=lambda r: r["pass"])
    if run.interrupted or len(records) < passes:
        raise RemoteError(f"measuring on {remote.target} stopped after {len(records)} pass(es)")
    return [measurement_from_record(r) for r in records], records[-1]["env"]
