"""The one atomic private write: mode 0600, whole-file replacement, nothing left on failure."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from common.errors import ErrorCode, TesseraError
from common.files import atomic_write_bytes, ensure_private_file

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_is_private_and_holds_exactly_the_bytes(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "result.json"
    atomic_write_bytes(target, b'{"ok": true}')
    assert target.read_bytes() == b'{"ok": true}'
    assert _mode(target) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]


def test_a_replaced_file_becomes_private_even_if_it_was_not(tmp_path: Path) -> None:
    target = tmp_path / "site.toml"
    target.write_text("old")
    target.chmod(0o644)
    atomic_write_bytes(target, b"new")
    assert _mode(target) == 0o600


def test_the_mode_asked_for_is_set_before_the_file_appears(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "ca.pem"
    seen: list[int] = []
    real_replace = os.replace

    def watch(src: object, dst: object) -> None:
        seen.append(_mode(Path(str(src))))
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", watch)
    old_umask = os.umask(0o077)  # a strict umask must not narrow an explicit mode
    try:
        atomic_write_bytes(target, b"certificate", mode=0o644)
    finally:
        os.umask(old_umask)
    assert seen == [0o644]
    assert _mode(target) == 0o644


def test_content_is_replaced_whole_never_edited_in_place(tmp_path: Path) -> None:
    target = tmp_path / "model.json"
    atomic_write_bytes(target, b"version one")
    with target.open("rb") as reader:  # a reader that opened the old file...
        atomic_write_bytes(target, b"version two, longer")
        assert reader.read() == b"version one"  # ...still sees all of it, unmixed
    assert target.read_bytes() == b"version two, longer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]


def test_a_failed_rename_keeps_the_old_file_and_leaves_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "node.json"
    atomic_write_bytes(target, b"old")

    def broken(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.json"]


def test_a_failed_write_leaves_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_fd: int) -> None:
        raise OSError("I/O error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="I/O error"):
        atomic_write_bytes(tmp_path / "result.json", b"data")
    assert list(tmp_path.iterdir()) == []


def test_the_file_and_its_folder_are_synced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[bool] = []
    real_fsync = os.fsync

    def record(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", record)
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    assert synced == [False, True]  # the data first, then the rename in its folder


def test_without_overwrite_an_existing_file_is_refused_and_kept(tmp_path: Path) -> None:
    target = tmp_path / "keystore.json"
    atomic_write_bytes(target, b"first", overwrite=False)
    with pytest.raises(TesseraError, match=r"keystore\.json already exists") as info:
        atomic_write_bytes(target, b"second", overwrite=False)
    assert info.value.code is ErrorCode.DUPLICATE
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keystore.json"]


def test_ensure_private_file_creates_an_empty_private_file_once(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    ensure_private_file(db)
    assert db.read_bytes() == b"" and _mode(db) == 0o600
    db.write_bytes(b"SQLite format 3")
    ensure_private_file(db)
    assert db.read_bytes() == b"SQLite format 3"
