"""Encryption at rest: blob format, atomic encrypted files, keystore, passphrase sources."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
import types
from pathlib import Path

import pytest

from common.errors import ErrorCode, TesseraError
from privacy import passphrase
from privacy.at_rest import (
    Keystore,
    ScryptParams,
    decrypt_blob,
    encrypt_blob,
    read_encrypted,
    write_encrypted,
)
from privacy.passphrase import passphrase_from_environment

FAST = {"n": 2**4, "r": 8, "p": 1}  # test-only scrypt cost; production default is 2**15
KEY = bytes(range(32))


def _code(excinfo: pytest.ExceptionInfo[TesseraError]) -> ErrorCode:
    return excinfo.value.code


# --- blobs -------------------------------------------------------------------------------


def test_blob_round_trips_and_starts_with_documented_header() -> None:
    blob = encrypt_blob(KEY, b"patient-free bytes", role="dataset")
    assert blob[:4] == b"TSRA" and blob[4] == 1 and blob[5] == len("dataset")
    assert blob[6:13] == b"dataset"
    assert len(blob) == 6 + 7 + 12 + len(b"patient-free bytes") + 16
    assert decrypt_blob(KEY, blob, role="dataset") == b"patient-free bytes"


def test_each_encryption_uses_a_fresh_nonce() -> None:
    first = encrypt_blob(KEY, b"same plaintext", role="model")
    second = encrypt_blob(KEY, b"same plaintext", role="model")
    assert first[13:25] != second[13:25]
    assert first != second


def test_changing_any_byte_is_detected_as_integrity_failure() -> None:
    blob = encrypt_blob(KEY, b"0123456789abcdef" * 2, role="secret")
    for index in range(len(blob)):
        tampered = bytearray(blob)
        tampered[index] ^= 0x01
        with pytest.raises(TesseraError) as excinfo:
            decrypt_blob(KEY, bytes(tampered), role="secret")
        assert _code(excinfo) is ErrorCode.DATA_INVALID
        assert "integrity check failed" in excinfo.value.message
        assert "0123456789" not in str(excinfo.value)


@pytest.mark.parametrize("cut", [0, 3, 5, 10, 30, -1])
def test_truncated_blob_is_refused(cut: int) -> None:
    blob = encrypt_blob(KEY, b"some bytes", role="secret")
    with pytest.raises(TesseraError) as excinfo:
        decrypt_blob(KEY, blob[:cut], role="secret")
    assert _code(excinfo) is ErrorCode.DATA_INVALID


def test_blob_is_refused_for_another_role_or_key_or_version() -> None:
    blob = encrypt_blob(KEY, b"bytes", role="ckks-secret")
    with pytest.raises(TesseraError) as excinfo:
        decrypt_blob(KEY, blob, role="dataset")
    assert _code(excinfo) is ErrorCode.DATA_INVALID
    with pytest.raises(TesseraError) as excinfo:
        decrypt_blob(bytes(32), blob, role="ckks-secret")
    assert _code(excinfo) is ErrorCode.DATA_INVALID
    with pytest.raises(TesseraError) as excinfo:
        decrypt_blob(KEY, blob[:4] + b"\x02" + blob[5:], role="ckks-secret")
    assert "version" in excinfo.value.message


def test_bad_key_length_and_role_name_the_parameter() -> None:
    with pytest.raises(TesseraError, match="key") as excinfo:
        encrypt_blob(b"short", b"x", role="dataset")
    assert _code(excinfo) is ErrorCode.CONFIG_INVALID
    with pytest.raises(TesseraError, match="role"):
        encrypt_blob(KEY, b"x", role="has space")


# --- files -------------------------------------------------------------------------------


def test_encrypted_file_round_trips_with_owner_only_mode(tmp_path: Path) -> None:
    target = tmp_path / "data" / "train.bin"
    write_encrypted(target, KEY, b"rows", role="dataset")
    assert read_encrypted(target, KEY, role="dataset") == b"rows"
    if os.name == "posix":
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["train.bin"]


def test_plaintext_never_reaches_the_folder_even_in_temp_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plaintext = os.urandom(128 * 1024)
    windows = {plaintext[i:i + 16] for i in range(len(plaintext) - 15)}
    seen: list[bytes] = []
    real_replace = os.replace

    def snapshot_then_replace(src: object, dst: object) -> None:
        seen.extend(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", snapshot_then_replace)
    write_encrypted(tmp_path / "big.bin", KEY, plaintext, role="dataset")
    seen.extend(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert seen and all(len(content) > len(plaintext) for content in seen)
    for content in seen:
        assert not any(content[i:i + 16] in windows for i in range(len(content) - 15))


def test_failed_write_keeps_old_file_and_leaves_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "model.bin"
    write_encrypted(target, KEY, b"version one", role="model")
    before = target.read_bytes()

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_encrypted(target, KEY, b"version two", role="model")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_reading_a_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(TesseraError) as excinfo:
        read_encrypted(tmp_path / "absent.bin", KEY, role="dataset")
    assert _code(excinfo) is ErrorCode.NOT_FOUND


# --- keystore ----------------------------------------------------------------------------


def test_default_scrypt_cost_is_strong() -> None:
    params = ScryptParams()
    assert params.n >= 2**15 and params.r == 8 and params.p == 1 and len(params.salt) >= 16
    assert "salt" not in repr(params)


def test_keystore_created_with_defaults_records_strong_cost(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    Keystore.create(path, "a real passphrase")
    kdf = json.loads(path.read_text())["kdf"]
    assert (kdf["n"], kdf["r"], kdf["p"]) == (2**15, 8, 1)
    assert Keystore.unlock(path, "a real passphrase").key_names == ()


def test_data_key_is_created_once_persisted_and_hidden_from_repr(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "keystore.json"
    store = Keystore.create(path, "correct horse", **FAST)
    key = store.data_key()
    assert len(key) == 32 and store.data_key() == key
    assert key.hex() not in repr(store) and str(key) not in repr(store)
    assert key.hex() not in path.read_text()
    reopened = Keystore.unlock(path, "correct horse")
    assert reopened.data_key("default") == key
    assert reopened.key_names == ("default",)
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keystore_json_has_the_documented_shape(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    Keystore.create(path, "pass phrase", **FAST).add_data_key("dataset")
    doc = json.loads(path.read_text())
    assert doc["format"] == "tessera-keystore" and doc["version"] == 1
    assert doc["kdf"]["name"] == "scrypt" and len(bytes.fromhex(doc["kdf"]["salt"])) == 16
    assert set(doc["check"]) == {"nonce", "value"}
    assert set(doc["keys"]["dataset"]) == {"nonce", "wrapped"}


def test_create_refuses_to_overwrite_and_refuses_empty_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    with pytest.raises(TesseraError, match="passphrase") as excinfo:
        Keystore.create(path, "", **FAST)
    assert _code(excinfo) is ErrorCode.CONFIG_INVALID
    assert not path.exists()
    Keystore.create(path, "first", **FAST)
    before = path.read_bytes()
    with pytest.raises(TesseraError) as excinfo:
        Keystore.create(path, "second", **FAST)
    assert _code(excinfo) is ErrorCode.DUPLICATE
    assert path.read_bytes() == before


def test_adding_an_existing_key_name_is_refused(tmp_path: Path) -> None:
    store = Keystore.create(tmp_path / "keystore.json", "pass", **FAST)
    store.add_data_key("model")
    with pytest.raises(TesseraError) as excinfo:
        store.add_data_key("model")
    assert _code(excinfo) is ErrorCode.DUPLICATE


def test_wrong_passphrase_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    Keystore.create(path, "right", **FAST).data_key()
    before = path.read_bytes()
    with pytest.raises(TesseraError) as excinfo:
        Keystore.unlock(path, "wrong")
    assert _code(excinfo) is ErrorCode.WRONG_PASSPHRASE
    assert excinfo.value.message == "wrong passphrase for this site's keystore"
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keystore.json"]


def test_rotation_keeps_old_blobs_readable_and_retires_old_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    store = Keystore.create(path, "old phrase", **FAST)
    blob_path = tmp_path / "secret.bin"
    write_encrypted(blob_path, store.data_key("secret"), b"ckks secret", role="secret")
    blob_before = blob_path.read_bytes()
    salt_before = json.loads(path.read_text())["kdf"]["salt"]

    Keystore.rotate_passphrase(path, "old phrase", "new phrase")

    assert blob_path.read_bytes() == blob_before
    assert json.loads(path.read_text())["kdf"]["salt"] != salt_before
    rotated = Keystore.unlock(path, "new phrase")
    assert read_encrypted(blob_path, rotated.data_key("secret"), role="secret") == b"ckks secret"
    with pytest.raises(TesseraError) as excinfo:
        Keystore.unlock(path, "old phrase")
    assert _code(excinfo) is ErrorCode.WRONG_PASSPHRASE


def test_rotation_with_wrong_old_passphrase_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    Keystore.create(path, "old", **FAST).data_key()
    before = path.read_bytes()
    with pytest.raises(TesseraError) as excinfo:
        Keystore.rotate_passphrase(path, "not it", "new")
    assert _code(excinfo) is ErrorCode.WRONG_PASSPHRASE
    assert path.read_bytes() == before


def test_stale_handle_cannot_add_keys_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    stale = Keystore.create(path, "old", **FAST)
    Keystore.rotate_passphrase(path, "old", "new")
    with pytest.raises(TesseraError) as excinfo:
        stale.add_data_key("late")
    assert _code(excinfo) is ErrorCode.CONFIG_INVALID
    assert Keystore.unlock(path, "new").key_names == ()


@pytest.mark.parametrize("kdf_change", [
    {"n": 2**30}, {"n": 2**21}, {"n": 1000}, {"r": 64}, {"p": 1000}, {"n": 2**20, "r": 32},
    {"n": 2**20, "r": 8, "p": 16}, {"salt": "00" * 8}, {"salt": "00" * 65}, {"n": "big"},
    {"name": "pbkdf2"},
])
def test_hostile_kdf_parameters_are_refused_quickly(tmp_path: Path, kdf_change: dict) -> None:
    path = tmp_path / "keystore.json"
    Keystore.create(path, "pass", **FAST)
    doc = json.loads(path.read_text())
    doc["kdf"].update(kdf_change)
    path.write_text(json.dumps(doc))
    started = time.monotonic()
    with pytest.raises(TesseraError) as excinfo:
        Keystore.unlock(path, "pass")
    assert _code(excinfo) is ErrorCode.CONFIG_INVALID
    assert time.monotonic() - started < 0.5


def test_missing_or_garbled_keystore_gives_clear_codes(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    with pytest.raises(TesseraError) as excinfo:
        Keystore.unlock(path, "pass")
    assert _code(excinfo) is ErrorCode.KEY_MISSING
    path.write_text("{not json")
    with pytest.raises(TesseraError) as excinfo:
        Keystore.unlock(path, "pass")
    assert _code(excinfo) is ErrorCode.CONFIG_INVALID


def test_swapped_wrapped_keys_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    store = Keystore.create(path, "pass", **FAST)
    store.add_data_key("a")
    store.add_data_key("b")
    doc = json.loads(path.read_text())
    doc["keys"]["a"], doc["keys"]["b"] = doc["keys"]["b"], doc["keys"]["a"]
    path.write_text(json.dumps(doc))
    with pytest.raises(TesseraError) as excinfo:
        Keystore.unlock(path, "pass").data_key("a")
    assert _code(excinfo) is ErrorCode.DATA_INVALID


# --- passphrase sources ------------------------------------------------------------------


@pytest.fixture
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keyring", None)  # import fails: keyring not installed
    monkeypatch.delenv("TESSERA_SITE_PASSPHRASE", raising=False)


def test_passphrase_comes_from_the_environment_first(
        no_keyring: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_SITE_PASSPHRASE", "from env")
    assert passphrase_from_environment() == "from env"


def test_missing_passphrase_without_terminal_is_key_missing(
        no_keyring: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(isatty=lambda: False))
    with pytest.raises(TesseraError, match="TESSERA_SITE_PASSPHRASE") as excinfo:
        passphrase_from_environment()
    assert _code(excinfo) is ErrorCode.KEY_MISSING


def test_terminal_prompts_unless_prompting_is_off(
        no_keyring: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(isatty=lambda: True))
    monkeypatch.setattr(passphrase.getpass, "getpass", lambda prompt: "typed")
    assert passphrase_from_environment() == "typed"
    with pytest.raises(TesseraError) as excinfo:
        passphrase_from_environment(prompt=False)
    assert _code(excinfo) is ErrorCode.KEY_MISSING


def test_os_keyring_is_used_when_available_and_failures_are_skipped(
        no_keyring: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(isatty=lambda: False))
    fake = types.ModuleType("keyring")
    fake.get_password = lambda service, user: (  # type: ignore[attr-defined]
        "from keyring" if (service, user) == ("tessera", "site-passphrase") else None)
    monkeypatch.setitem(sys.modules, "keyring", fake)
    assert passphrase_from_environment() == "from keyring"

    def no_backend(service: str, user: str) -> str:
        raise RuntimeError("no backend")

    fake.get_password = no_backend  # type: ignore[attr-defined]
    with pytest.raises(TesseraError) as excinfo:
        passphrase_from_environment()
    assert _code(excinfo) is ErrorCode.KEY_MISSING
