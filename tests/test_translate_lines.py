"""The line contract of `translate` and of every text read as lines (corpora, references).

One output line per input line, in order, whatever the bytes in between: lines end at "\\n" only
(one "\\r" before it dropped), a final line without "\\n" counts when it holds anything, a leading
byte-order mark is dropped, and a line with no subword after the tokenizer's normalisation gives an
empty output line. Input that is not UTF-8 is one `error:` line naming the input and line.
"""

from __future__ import annotations

import codecs
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from mos_search.cli import main
from mos_search.constants import EOS_ID, PAD_ID
from mos_search.data.parallel import read_lines, read_parallel
from mos_search.deploy import translate as translate_module
from mos_search.deploy.translate import OnnxTranslator, one_line
from mos_search.models.build import load_model
from mos_search.models.onnx import export_onnx
from mos_search.oracle.scoring import corpus_bleu

from conftest import assert_one_line_error, synthetic_pairs, tree_digests

BOM = codecs.BOM_UTF8
# characters `str.splitlines` (or a tokenizer) treats specially, and a few ordinary pieces
PIECES = ["uno", "dos", "casa", " ", "\t", "\r", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e", "\x85"]
PIECES += ["\u2028", "\u2029", "\u200b", "\ufeff", "é", "\x00", "🙂"]
CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\n")
LINE = st.lists(st.sampled_from(PIECES) | st.text(CHARS, max_size=4), max_size=6).map("".join)
EXAMPLES = settings(max_examples=25, deadline=None)


@pytest.fixture(scope="module")
def model(tiny_run, tiny_corpus, tmp_path_factory):
    """The tiny supernet's smallest sub-network as a model folder: both graphs and the tokenizer."""
    out = tmp_path_factory.mktemp("model")
    loaded = load_model(tiny_run)
    export_onnx(loaded.sub_network(loaded.space.smallest()), out)
    shutil.copy(tiny_corpus.tokenizer_path, out / "spm.model")
    return out


@pytest.fixture(scope="module")
def translator(model):
    return OnnxTranslator(model)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("inputs")


@st.composite
def documents(draw) -> tuple[bytes, list[str]]:
    """Input bytes and the lines the contract reads from them, built independently of the code:
    each line ends in "\\n" or "\\r\\n", or (the last, when it holds anything) in nothing."""
    lines = draw(st.lists(LINE, max_size=8))
    ends = [draw(st.sampled_from(["\n", "\r\n"])) for _ in lines]
    if lines and draw(st.booleans()):
        ends[-1] = ""
    bom = draw(st.booleans())
    data = (BOM if bom else b"") + "".join(a + b for a, b in zip(lines, ends)).encode("utf-8")
    if not bom and lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]  # the file starts with the mark: it is dropped, not read
    expected = [a if b == "\r\n" else a.removesuffix("\r") for a, b in zip(lines, ends)]
    if lines and ends[-1] == "" and lines[-1] == "":
        expected.pop()  # nothing after the last "\n": no line
    return data, expected


def run_translate(model, workdir, data: bytes, from_file: bool, beam: int = 1):
    """`mos-search translate` on `data`, from an --input file or from stdin."""
    args = ["translate", "--model", str(model), "--beam", str(beam)]
    if from_file:
        path = workdir / "input.txt"
        path.write_bytes(data)
        return CliRunner().invoke(main, [*args, "--input", str(path)])
    return CliRunner().invoke(main, args, input=data)


def output_lines(result) -> list[str]:
    """Output lines; every one of them ends in "\\n" and holds no other line end."""
    assert result.exit_code == 0, (result.output, result.exception)
    text = result.stdout_bytes.decode("utf-8")
    assert text == "" or text.endswith("\n")
    lines = text.split("\n")[:-1] if text else []
    assert text.splitlines() == lines  # nothing else inside a line that ends one
    return lines


class EchoStepper:
    """A decoder that copies its source: translations then say which input line they came from,
    so the order through length sorting, batching and beams is checked exactly."""

    vocab = 0

    def __init__(self, encoder, decoder) -> None:
        pass

    def start(self, src: np.ndarray) -> np.ndarray:
        return src

    def step(self, prefix: np.ndarray, src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = prefix.shape[1] - 1  # tokens written so far (the prefix starts with BOS)
        token = src[:, t] if t < src.shape[1] else np.full(len(src), EOS_ID)
        # every other token impossible: no beam ends early on a competing EOS
        logits = np.full((len(src), self.vocab), -np.inf, dtype=np.float32)
        logits[np.arange(len(src)), np.where(token == PAD_ID, EOS_ID, token)] = 0.0
        return logits, src

    def reorder(self, src: np.ndarray, order: np.ndarray) -> np.ndarray:
        return src[order]


def echoed(translator, line: str) -> str:
    """What the echo model writes for `line`: its subwords detokenised; nothing when none."""
    ids = translator.tokenizer.encode(line)
    return one_line(translator.tokenizer.decode(ids)) if ids else ""


@given(document=documents(), from_file=st.booleans(), beam=st.sampled_from([1, 2]))
@EXAMPLES
def test_every_input_line_gives_its_own_output_line_in_order(
    model, translator, workdir, document, from_file, beam
):
    data, expected = document
    EchoStepper.vocab = translator.tokenizer.vocab_size
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(translate_module, "OnnxStepper", EchoStepper)
        lines = output_lines(run_translate(model, workdir, data, from_file, beam))
    assert lines == [echoed(translator, line) for line in expected]


ALONE: dict[str, str] = {}


@given(document=documents(), from_file=st.booleans())
@EXAMPLES
def test_the_real_model_translates_each_line_as_if_alone(
    model, translator, workdir, document, from_file
):
    data, expected = document
    lines = output_lines(run_translate(model, workdir, data, from_file))
    assert len(lines) == len(expected)
    for got, line in zip(lines, expected):
        if not translator.tokenizer.encode(line):
            assert got == ""  # nothing to translate: no invented sentence
        if line not in ALONE:
            ALONE[line] = translator.translate([line], beam=1)[0]
        assert got == ALONE[line]


RAW = st.lists(
    st.sampled_from([b"\n", b"\r\n", b"uno ", b"\xc3\xa9", b"\x0c", "\u2028".encode(), BOM])
    | st.sampled_from([b"\xe9", b"\xff", b"\xc3", b"\xed\xa0\x80"])
    | st.binary(max_size=3),
    max_size=12,
).map(b"".join)


@given(data=RAW, from_file=st.booleans())
@EXAMPLES
def test_any_bytes_give_the_lines_or_one_error_naming_input_and_line(
    model, translator, workdir, data, from_file
):
    EchoStepper.vocab = translator.tokenizer.vocab_size
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(translate_module, "OnnxStepper", EchoStepper)
        result = run_translate(model, workdir, data, from_file)
    body = data.removeprefix(BOM)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = str(workdir / "input.txt") if from_file else "<stdin>"
        line = body.count(b"\n", 0, exc.start) + 1
        assert_one_line_error(result, f"{where}:{line}: not UTF-8 text")
        assert result.stdout_bytes == b""  # refused whole: not one line translated
        return
    lines = output_lines(result)
    assert len(lines) == text.count("\n") + (not text.endswith("\n") and text != "")
    assert lines == [echoed(translator, line) for line in text.split("\n")[: len(lines)]]


def test_line_ends_inside_a_line_and_blank_lines(model, translator, workdir):
    data = "uno\x0cdos\nuno\u2028dos\x85casa\r\n\u200b\n\ufeff\n \t\n\x0c\ncasa".encode()
    lines = output_lines(run_translate(model, workdir, data, from_file=False))
    assert len(lines) == 7 and lines[2:6] == ["", "", "", ""]
    assert lines[0] == translator.translate(["uno\x0cdos"], beam=1)[0]
    assert lines[6] == translator.translate(["casa"], beam=1)[0]


def test_latin1_input_is_one_line_naming_file_and_line(model, workdir, tmp_path):
    path = tmp_path / "input.txt"
    path.write_bytes("uno dos\ncasa\xe9 perro\n".encode("latin-1"))
    before = tree_digests(model, tmp_path)
    result = CliRunner().invoke(main, ["translate", "--model", str(model), "--input", str(path)])
    assert_one_line_error(result, str(path), ":2:", "byte 0xe9 at column 5")
    assert tree_digests(model, tmp_path) == before and result.stdout_bytes == b""
    piped = CliRunner().invoke(
        main, ["translate", "--model", str(model)], input=b"\xef\xbb\xbfhola\xe9\n"
    )
    assert_one_line_error(piped, "<stdin>:1:", "byte 0xe9 at column 5")
    missing = CliRunner().invoke(
        main, ["translate", "--model", str(model), "--input", str(tmp_path / "none.txt")]
    )
    assert_one_line_error(missing, "cannot read", "none.txt")


def test_a_byte_order_mark_is_no_part_of_the_first_sentence(model, workdir, tmp_path):
    plain = "uno dos\r\ncasa\x0cperro\n"
    (tmp_path / "plain.en").write_text(plain, encoding="utf-8", newline="")
    (tmp_path / "bom.en").write_bytes(BOM + plain.encode())
    assert read_lines(tmp_path / "bom.en") == read_lines(tmp_path / "plain.en")
    assert read_lines(tmp_path / "plain.en") == ["uno dos", "casa\x0cperro"]
    with_mark = run_translate(model, workdir, BOM + plain.encode(), from_file=True)
    without = run_translate(model, workdir, plain.encode(), from_file=True)
    assert output_lines(with_mark) == output_lines(without)


def test_a_reference_file_with_a_mark_scores_100_against_itself(tmp_path):
    from mos_search.data.batches import encode_split
    from mos_search.data.corpus import build_parallel_corpus
    from mos_search.data.tokenizer import Tokenizer

    for split, seed, count in (("train", 0, 200), ("valid", 1, 10), ("test", 2, 10)):
        pairs = synthetic_pairs(count, seed)
        for side, lang in ((0, "es"), (1, "en")):
            text = "".join(pair[side] + "\n" for pair in pairs)
            (tmp_path / f"{split}.{lang}").write_bytes(BOM + text.encode())
    targets = [t for _, t in synthetic_pairs(10, 2)]
    assert [t for _, t in read_parallel(tmp_path / "test.es", tmp_path / "test.en")] == targets
    corpus = build_parallel_corpus(
        tmp_path / "corpus",
        "es",
        "en",
        *(str(tmp_path / s) for s in ("train", "valid", "test")),
        vocab_size=64,
    )
    references = encode_split(corpus, "test", Tokenizer(corpus.tokenizer_path)).references
    assert references == targets
    assert corpus_bleu(targets, references)[0] == pytest.approx(100.0)
    assert corpus_bleu(targets, read_lines(tmp_path / "test.en"))[0] == pytest.approx(100.0)
    glued = ["\ufeff" + targets[0], *targets[1:]]  # what a mark kept in the first line costs
    assert corpus_bleu(targets, glued)[0] < 99.9
