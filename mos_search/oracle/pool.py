"""A pool of worker processes, each with its own copy of an oracle, scoring in parallel."""

from __future__ import annotations

from mos_search.arch import ArchBase
from mos_search.errors import ConfigError
from mos_search.oracle.scoring import Oracle

_WORKER_ORACLE: Oracle | None = None


def _start_worker(settings: dict) -> None:
    import signal

    global _WORKER_ORACLE
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops between
    _WORKER_ORACLE = Oracle(**settings, cache_path=None, threads=1)  # generations


def _worker_compute(arch: dict, metric: str, beam: int) -> tuple[dict, list[str] | None]:
    assert _WORKER_ORACLE is not None
    return _WORKER_ORACLE.compute(_WORKER_ORACLE.space.arch_from_dict(arch), metric, beam)


class ScoringPool:
    """Worker processes, each holding its own copy of an oracle (one thread each), that score
    architectures in parallel. Scoring is deterministic, so results equal sequential scoring
    at one thread; the parent oracle caches what the workers return."""

    def __init__(self, settings: dict, workers: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if workers < 2:
            raise ConfigError(f"a scoring pool needs at least 2 workers, found {workers}")
        self.workers = workers
        self._executor = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(settings,),
        )

    def compute(
        self, archs: list[ArchBase], metric: str, beam: int
    ) -> list[tuple[dict, list[str] | None]]:
        """(record, hypotheses) of each arch, computed by the workers."""
        from concurrent.futures.process import BrokenProcessPool

        try:
            jobs = [
                self._executor.submit(_worker_compute, a.to_dict(), metric, beam) for a in archs
            ]
            return [job.result() for job in jobs]
        except BrokenProcessPool:
            raise ConfigError(
                "a scoring worker died (out of memory?); rerun with fewer --workers"
            ) from None

    def close(self) -> None:
        """Stop the workers."""
        self._executor.shutdown(cancel_futures=True)
