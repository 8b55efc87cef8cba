"""The embedded default corpus: Reina-Valera 1909 (Spanish) -> World English Bible, verse-aligned.

Both texts are public domain and ship as SWORD modules in Debian (`sword-text-sparv`,
`sword-text-web`); `mod2imp` (`libsword-utils`) dumps a module as OSIS-marked verses. We strip
the markup (footnotes become a space, headings are dropped), join the two on book/chapter/verse,
and split by whole books so train, validation and test never share a chapter.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from dataclasses import dataclass

from mos_search.errors import DataError, MosSearchError
from mos_search.files import decode_utf8, split_lines

SOURCE_MODULE = "spaRV1909eb"
TARGET_MODULE = "engWEB2015eb"
DEBIAN_PACKAGES = "libsword-utils sword-text-sparv sword-text-web"
# Fixed split by whole books: a narrative, a prophet and a gospel for validation; a narrative,
# a gospel and an epistle for test. Every other book shared by both texts is training data.
VALID_BOOKS = ("Judges", "Jonah", "John")
TEST_BOOKS = ("Ruth", "Mark", "Romans")

_KEY = re.compile(r"^(?P<book>.+) (?P<chapter>\d+):(?P<verse>\d+)$")
_NOTE = re.compile(r"<note\b[^>]*/>|<note\b[^>]*>.*?</note>", re.DOTALL)
_HEADING = re.compile(r"<title\b(?![^>]*canonical=\"true\")[^>]*>.*?</title>", re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?’”)])")


@dataclass(frozen=True)
class Verse:
    """One aligned verse pair."""

    book: str
    chapter: int
    verse: int
    source: str
    target: str


def clean_osis(fragment: str) -> str:
    """Plain text of an OSIS verse: notes -> space, headings dropped, tags removed."""
    text = _NOTE.sub(" ", fragment)
    text = _HEADING.sub(" ", text)
    text = _TAG.sub("", text)
    text = html.unescape(text)
    text = _SPACE.sub(" ", text).strip()
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text)


def parse_imp(dump: str) -> dict[tuple[str, int, int], str]:
    """Verses of a `mod2imp` dump keyed by (book, chapter, verse); intros (0:0, N:0) skipped."""
    verses: dict[tuple[str, int, int], str] = {}
    key, lines = None, []

    def flush() -> None:
        if key is not None:
            text = clean_osis(" ".join(lines))
            if text:
                verses[key] = text

    for line in split_lines(dump):  # "\n" only: a form feed inside a verse ends no line
        if line.startswith("$$$"):
            flush()
            match = _KEY.match(line[3:].strip())
            key = None
            if match and int(match["chapter"]) > 0 and int(match["verse"]) > 0:
                key = (match["book"], int(match["chapter"]), int(match["verse"]))
            lines = []
        else:
            lines.append(line)
    flush()
    return verses


def dump_module(module: str) -> str:
    """Raw OSIS dump of a SWORD module; a missing tool or module is one clear DataError."""
    if shutil.which("mod2imp") is None:
        raise DataError(
            f"mod2imp not found; install the corpus packages: "
            f"apt-get install {DEBIAN_PACKAGES} (or run `make setup`)"
        )
    result = subprocess.run(["mod2imp", module], capture_output=True, check=False)
    if result.returncode != 0 or b"$$$" not in result.stdout:
        raise DataError(
            f"SWORD module {module} not found; install it: "
            f"apt-get install {DEBIAN_PACKAGES} (or run `make setup`)"
        )
    try:  # UTF-8 whatever the locale; a bad byte is one line naming the module, line and column
        return decode_utf8(result.stdout, f"mod2imp {module}")
    except MosSearchError as exc:
        raise DataError(str(exc)) from None


def bible_verses() -> list[Verse]:
    """Verse pairs present in both modules, in the source module's order."""
    source, target = parse_imp(dump_module(SOURCE_MODULE)), parse_imp(dump_module(TARGET_MODULE))
    return [
        Verse(book, ch, v, text, target[(book, ch, v)])
        for (book, ch, v), text in source.items()
        if (book, ch, v) in target
    ]


def split_of(book: str) -> str:
    """ "train", "valid" or "test" for a book name."""
    if book in VALID_BOOKS:
        return "valid"
    if book in TEST_BOOKS:
        return "test"
    return "train"
