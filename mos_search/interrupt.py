"""Two-stage Ctrl-C: the first asks a long loop to stop at its next safe point, a second stops now.

    with GracefulStop() as stop:
        while not stop.requested:
            one_step()  # a second Ctrl-C raises KeyboardInterrupt in here

The handler is installed only in the main thread (Python delivers signals there alone; elsewhere
the block runs with the handler it finds) and the previous one is put back on leaving the block.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any


class GracefulStop:
    """A SIGINT handler for one block: the first Ctrl-C sets `requested`, a second one raises
    KeyboardInterrupt. `request()` does what the first Ctrl-C does (for tests and callers)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def request(self) -> None:
        """Ask the loop to stop at its next safe point."""
        self.requested = True

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.request()

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
