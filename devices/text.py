"""UTF-8 text of every file the toolkit reads, saying where a file is not UTF-8; the
"did you mean" hint of every unknown-key message.

The one decoder of the three packages (`devices` is the lowest, so `latency` and `mos_search`
can use it): each reader prefixes its file and the line and raises its own error type
(ProfileError, DatasetError, PredictorError, MosSearchError).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

BOM = b"\xef\xbb\xbf"  # the UTF-8 byte-order mark


class NotUtf8(ValueError):
    """Bytes that are not UTF-8: `line` (1-based) of the first bad byte, and the message
    `not UTF-8 text (byte 0xe9 at column 19); save the file as UTF-8`."""

    def __init__(self, line: int, column: int, byte: int) -> None:
        super().__init__(
            f"not UTF-8 text (byte 0x{byte:02x} at column {column}); save the file as UTF-8"
        )
        self.line = line


def decode_utf8(data: bytes) -> str:
    """`data` as text without a leading byte-order mark; NotUtf8 at the first byte that is not
    UTF-8."""
    if data.startswith(BOM):
        data = data[len(BOM) :]  # positions below then count from the text, not from the mark
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start
        line = data.count(b"\n", 0, start) + 1
        column = start - (data.rfind(b"\n", 0, start) + 1) + 1
        raise NotUtf8(line, column, data[start]) from None


def did_you_mean(unknown: Iterable[str], known: Iterable[str]) -> str:
    """` (did you mean X?)` naming the known key closest to each unknown one, or "" when none is
    close (difflib): `dtpye` -> ` (did you mean dtype?)`."""
    known = list(known)
    pairs = [
        (key, match[0])
        for key in unknown
        if (match := difflib.get_close_matches(key, known, n=1, cutoff=0.75))
    ]
    if not pairs:
        return ""
    if len(pairs) == 1:
        return f" (did you mean {pairs[0][1]}?)"
    return " (did you mean " + ", ".join(f"{m} for {k}" for k, m in pairs) + "?)"
