"""The file helpers every command reads and writes through: decoding, writability, overwrites."""

from __future__ import annotations

import os

import pytest

from mos_search.errors import MosSearchError
from mos_search.files import check_writable_dir, prepare_output_dir, read_json, read_text

from conftest import immutable


def test_text_that_is_not_utf8_names_file_line_and_column(tmp_path):
    path = tmp_path / "space.toml"
    path.write_bytes(b'name = "x"\ndescription = "caf\xe9"\n')
    with pytest.raises(MosSearchError) as info:
        read_text(path)
    assert str(info.value).startswith(f"{path}:2: not UTF-8 text (byte 0xe9 at column 19)")
    with pytest.raises(MosSearchError, match=r":2: not UTF-8"):
        read_json(path)


def test_a_byte_order_mark_is_dropped_and_not_counted(tmp_path):
    path = tmp_path / "arch.json"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}')
    assert read_json(path) == {"a": 1}
    path.write_bytes(b"\xef\xbb\xbfab\n\xffc")
    with pytest.raises(MosSearchError, match=r":2: not UTF-8 text \(byte 0xff at column 1\)"):
        read_text(path)


def test_unwritable_output_folders_are_named(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(MosSearchError, match="it is a file, not a folder"):
        check_writable_dir(a_file)
    with pytest.raises(MosSearchError, match=rf"cannot write to {a_file} \(needed for"):
        check_writable_dir(a_file / "sub" / "run")
    check_writable_dir(tmp_path / "new" / "run")  # creatable: fine, and nothing created
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the probe is gone


@pytest.mark.skipif(os.geteuid() == 0, reason="permission bits do not bind root")
def test_a_read_only_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(MosSearchError, match="Permission denied"):
            check_writable_dir(locked / "run")
    finally:
        locked.chmod(0o755)


def test_existing_output_is_refused_unless_overwrite_which_leaves_nothing_stale(tmp_path):
    out = tmp_path / "model"
    (out / "int8").mkdir(parents=True)
    (out / "int8" / "model.onnx").write_text("old")
    (out / "card.json").write_text("{}")
    with pytest.raises(MosSearchError, match="add --overwrite to replace the model"):
        prepare_output_dir(out, overwrite=False, what="model")
    assert (out / "int8" / "model.onnx").read_text() == "old"  # refused: untouched
    prepare_output_dir(out, overwrite=True, what="model")
    assert out.is_dir() and list(out.iterdir()) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare_output_dir(empty, overwrite=False) == empty  # an empty folder is fine


def test_an_immutable_folder_is_refused_even_for_root(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    guard = immutable(locked)
    if guard is None:
        pytest.skip("chattr +i needs root and a filesystem with the immutable attribute")
    with guard, pytest.raises(MosSearchError, match="Operation not permitted"):
        check_writable_dir(locked / "run")
