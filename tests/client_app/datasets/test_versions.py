"""Registering data files as dataset versions in a real site folder and vault."""

from __future__ import annotations

import hashlib
import statistics
from pathlib import Path

import pytest

from client_app.custody.vault import SiteVault, open_or_create_vault
from client_app.datasets import versions as datasets_module
from client_app.datasets.validation import Policy
from client_app.datasets.versions import (
    check_dataset,
    current_version,
    dataset_versions,
    read_current,
    register_dataset,
)
from client_app.learning.site_data import load_split
from client_app.store.folder import init_site_dir
from client_app.store.site_store import SiteStore
from common.datasets import content_hash, read_csv_bytes
from common.errors import ErrorCode, TesseraError
from common.plan import plan_hash
from tests.client_app.datasets.test_validation import (
    HEADER,
    PLAN,
    SECRET_ID,
    base_rows,
    to_csv,
    to_parquet,
)
from tests.conftest import TEST_PASSPHRASE


def folder_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (the store included) by its SHA-256."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def vault(tmp_path: Path) -> SiteVault:
    site = init_site_dir(tmp_path / "site", name="north")
    return open_or_create_vault(site, TEST_PASSPHRASE)


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def rows_of(vault: SiteVault) -> list[list[str]]:
    content, _ = read_current(vault, "cohort")
    lines = content.decode().splitlines()
    assert lines[0] == "patient_id,age,bmi,sbp,outcome,sex"
    return [line.split(",") for line in lines[1:]]


def _not_utf8() -> bytes:
    return to_csv(base_rows()).replace(b"P005", b"P\xff005")


def _semicolons() -> bytes:
    return to_csv(base_rows(), delimiter=";")


def _no_label() -> bytes:
    return to_csv([r[:-1] for r in base_rows()], HEADER[:-1])


def _out_of_range() -> bytes:
    rows = base_rows()
    rows[2][1] = "130"
    return to_csv(rows)


def _ten_percent_duplicates() -> bytes:
    rows = base_rows()
    return to_csv(rows + rows[:4])


MALFORMED = {
    "bad encoding": (_not_utf8, "line 6: the file is not UTF-8 text"),
    "wrong delimiter": (_semicolons, "the header is one column separated by ';'"),
    "missing label column": (_no_label, "header: column 'outcome' (the label) is missing"),
    "values out of range": (_out_of_range,
                            "column 'age': values outside the allowed range [0, 120] in 1 row "
                            "(row 3)"),
    "10% duplicate rows": (_ten_percent_duplicates,
                           "exact repeats of an earlier row in 4 rows (rows 41, 42, 43, 44)"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_file_is_refused_with_a_precise_report_and_changes_nothing(
        vault: SiteVault, tmp_path: Path, case: str) -> None:
    make, expected = MALFORMED[case]
    register_dataset(vault, write(tmp_path, "first.csv", to_csv(base_rows(30))), plan=PLAN,
                     policy=Policy(), actor="ann")
    before = folder_digest(vault.site.root)
    path = write(tmp_path, "cohort.csv", make())
    with pytest.raises(TesseraError) as caught:
        register_dataset(vault, path, plan=PLAN, policy=Policy(), actor="ann")
    assert caught.value.code is ErrorCode.DATA_INVALID
    assert caught.value.message.startswith("cohort.csv refused: ")
    assert expected in caught.value.message
    assert folder_digest(vault.site.root) == before
    assert len(dataset_versions(vault.site)) == 1


def test_a_clean_file_becomes_a_version_with_lineage_and_an_event(
        vault: SiteVault, tmp_path: Path) -> None:
    source = to_csv(base_rows())
    version = register_dataset(vault, write(tmp_path, "cohort.csv", source), plan=PLAN,
                               policy=Policy(), actor="ann")
    content, current = read_current(vault, "cohort")
    assert current == version and version.version == content_hash(content)
    assert version.parent_version is None and version.rows == 40
    assert version.source_hash == content_hash(source) and version.source_format == "csv"
    assert version.plan_hash == plan_hash(PLAN) and version.actor == "ann"
    assert version.policy == Policy().to_json()
    assert version.report["rows"] == 40 and version.report["issues"] == {}
    assert read_csv_bytes(content, PLAN.dataset, source_name="x").n_rows == 40
    with SiteStore.open(vault.site) as store:
        [event] = store.events(kind="dataset_registered")
    assert event.plan_hash == plan_hash(PLAN)
    assert event.details["version"] == version.version
    assert event.details["parent_version"] is None and event.details["rows"] == 40


def test_stored_versions_are_encrypted_at_rest(vault: SiteVault, tmp_path: Path) -> None:
    register_dataset(vault, write(tmp_path, "cohort.csv", to_csv(base_rows())), plan=PLAN,
                     policy=Policy(), actor="ann")
    content, _ = read_current(vault, "cohort")
    windows = {content[i:i + 16] for i in range(0, len(content) - 16, 5)}
    for path in vault.site.root.rglob("*"):
        if path.is_file():
            assert not any(w in path.read_bytes() for w in windows), path.name


def test_dropping_duplicates_keeps_first_rows_and_drops_disagreeing_ids(
        vault: SiteVault, tmp_path: Path) -> None:
    rows = base_rows()
    rows[10][0] = rows[2][0]  # P003 now on two rows that disagree: both go
    path = write(tmp_path, "cohort.csv", to_csv(rows + rows[:4]))
    version = register_dataset(vault, path, plan=PLAN, policy=Policy(duplicates="drop"),
                               actor="ann")
    ids = [r[0] for r in rows_of(vault)]
    assert len(ids) == 38 and "P003" not in ids and len(set(ids)) == 38
    assert version.report["applied"]["dropped_rows"] == 6


def test_missing_values_are_dropped_or_imputed_with_the_stated_method(
        vault: SiteVault, tmp_path: Path) -> None:
    rows = base_rows()
    rows[0][2] = ""
    rows[1][1] = "NA"
    path = write(tmp_path, "cohort.csv", to_csv(rows))
    register_dataset(vault, path, plan=PLAN, policy=Policy(missing="drop"), actor="ann")
    assert [r[0] for r in rows_of(vault)][:2] == ["P003", "P004"]

    median = register_dataset(vault, path, plan=PLAN, policy=Policy(missing="impute_median"),
                              actor="ann")
    stored = rows_of(vault)
    bmis = [float(r[2]) for r in rows[1:]]
    ages = [int(r[1]) for r in rows if r[1] != "NA"]
    assert float(stored[0][2]) == statistics.median(bmis)
    assert stored[1][1] == str(round(statistics.median(ages)))  # age is an integer column
    assert median.report["applied"]["imputed_values"] == 2

    register_dataset(vault, path, plan=PLAN, policy=Policy(missing="impute_mean"), actor="ann")
    assert float(rows_of(vault)[0][2]) == pytest.approx(statistics.mean(bmis))


def test_out_of_range_values_are_clipped_or_their_rows_dropped(
        vault: SiteVault, tmp_path: Path) -> None:
    rows = base_rows()
    rows[0][1], rows[1][2] = "130", "5"
    path = write(tmp_path, "cohort.csv", to_csv(rows))
    clipped = register_dataset(vault, path, plan=PLAN, policy=Policy(out_of_range="clip"),
                               actor="ann")
    stored = rows_of(vault)
    assert stored[0][1] == "120" and stored[1][2] == "10" and len(stored) == 40
    assert clipped.report["applied"]["clipped_values"] == 2
    register_dataset(vault, path, plan=PLAN, policy=Policy(out_of_range="drop"), actor="ann")
    assert len(rows_of(vault)) == 38


def test_outliers_are_kept_by_default_dropped_or_refused_on_request(
        vault: SiteVault, tmp_path: Path) -> None:
    rows = base_rows()
    rows[4][3] = "400"
    path = write(tmp_path, "cohort.csv", to_csv(rows))
    register_dataset(vault, path, plan=PLAN, policy=Policy(), actor="ann")
    assert len(rows_of(vault)) == 40
    register_dataset(vault, path, plan=PLAN, policy=Policy(outliers="drop"), actor="ann")
    assert "P005" not in [r[0] for r in rows_of(vault)]
    with pytest.raises(TesseraError, match="outliers=refuse"):
        register_dataset(vault, path, plan=PLAN, policy=Policy(outliers="refuse"), actor="ann")


def test_policies_that_cannot_fix_an_issue_are_refused(vault: SiteVault, tmp_path: Path) -> None:
    rows = base_rows()
    rows[0][5] = ""  # the label cannot be imputed
    rows[1][4] = "X"  # a category cannot be clipped
    path = write(tmp_path, "cohort.csv", to_csv(rows))
    policy = Policy(missing="impute_median", out_of_range="clip")
    with pytest.raises(TesseraError) as caught:
        register_dataset(vault, path, plan=PLAN, policy=policy, actor="ann")
    assert "column 'outcome': missing values cannot be imputed" in caught.value.message
    assert "column 'sex': a category cannot be clipped" in caught.value.message
    version = register_dataset(vault, path, plan=PLAN,
                               policy=Policy(missing="drop", out_of_range="drop"), actor="ann")
    assert version.rows == 38


def test_versions_chain_and_identical_content_is_a_no_op(
        vault: SiteVault, tmp_path: Path) -> None:
    first = register_dataset(vault, write(tmp_path, "a.csv", to_csv(base_rows(30))), plan=PLAN,
                             policy=Policy(), actor="ann")
    second = register_dataset(vault, write(tmp_path, "b.csv", to_csv(base_rows(40))),
                              plan=PLAN, policy=Policy(), actor="bob")
    before = folder_digest(vault.site.root)
    again = register_dataset(vault, tmp_path / "b.csv", plan=PLAN, policy=Policy(), actor="cy")
    assert again == second and folder_digest(vault.site.root) == before
    third = register_dataset(vault, tmp_path / "a.csv", plan=PLAN, policy=Policy(), actor="dee")
    assert second.parent_version == first.version
    assert third.version == first.version and third.parent_version == second.version
    assert [v.version for v in dataset_versions(vault.site, "cohort")] == [
        first.version, second.version, first.version]
    assert current_version(vault.site, "cohort") == third
    with SiteStore.open(vault.site) as store:
        assert len(store.events(kind="dataset_registered")) == 3


def test_parquet_registers_the_same_version_as_the_csv(vault: SiteVault, tmp_path: Path) -> None:
    rows = base_rows()
    rows[3][2] = ""
    from_csv = register_dataset(vault, write(tmp_path, "c.csv", to_csv(rows)), plan=PLAN,
                                policy=Policy(missing="drop"), actor="ann")
    shuffled = [HEADER[i] for i in (5, 0, 3, 1, 2, 4)]
    parquet = to_parquet([[r[HEADER.index(h)] for h in shuffled] for r in rows], shuffled)
    from_parquet = register_dataset(vault, write(tmp_path, "c.parquet", parquet), plan=PLAN,
                                    policy=Policy(missing="drop"), actor="ann")
    assert from_parquet == from_csv  # same cleaned content: a no-op
    other = tmp_path / "other"
    vault2 = open_or_create_vault(init_site_dir(other, name="south"), TEST_PASSPHRASE)
    fresh = register_dataset(vault2, tmp_path / "c.parquet", plan=PLAN,
                             policy=Policy(missing="drop"), actor="ann")
    assert fresh.version == from_csv.version and fresh.source_format == "parquet"


def test_a_failed_store_transaction_removes_the_stored_file(
        vault: SiteVault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register_dataset(vault, write(tmp_path, "a.csv", to_csv(base_rows(30))), plan=PLAN,
                     policy=Policy(), actor="ann")
    before = folder_digest(vault.site.root / "data")

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(datasets_module, "_insert", broken)
    with pytest.raises(OSError):
        register_dataset(vault, write(tmp_path, "b.csv", to_csv(base_rows())), plan=PLAN,
                         policy=Policy(), actor="ann")
    assert folder_digest(vault.site.root / "data") == before
    assert len(dataset_versions(vault.site)) == 1


def test_reading_refuses_a_stored_file_that_does_not_match_its_version(
        vault: SiteVault, tmp_path: Path) -> None:
    version = register_dataset(vault, write(tmp_path, "a.csv", to_csv(base_rows())), plan=PLAN,
                               policy=Policy(), actor="ann")
    vault.write_dataset_version("cohort", version.version, to_csv(base_rows(30)))
    with pytest.raises(TesseraError) as caught:
        read_current(vault, "cohort")
    assert caught.value.code is ErrorCode.DATA_INVALID


def test_older_sites_with_an_unversioned_file_still_load(vault: SiteVault) -> None:
    legacy = to_csv(base_rows())
    vault.write_dataset("cohort", legacy)
    content, version = read_current(vault, "cohort")
    assert content == legacy and version.version == content_hash(legacy)
    assert version.rows == 40 and dataset_versions(vault.site) == []
    assert load_split(vault, PLAN).dataset_version == content_hash(legacy)


def test_the_study_split_reads_the_current_version(vault: SiteVault, tmp_path: Path) -> None:
    register_dataset(vault, write(tmp_path, "a.csv", to_csv(base_rows(30))), plan=PLAN,
                     policy=Policy(), actor="ann")
    newest = register_dataset(vault, write(tmp_path, "b.csv", to_csv(base_rows())), plan=PLAN,
                              policy=Policy(), actor="ann")
    split = load_split(vault, PLAN)
    assert split.dataset_version == newest.version
    assert split.train.n_rows + split.test.n_rows == 40


def test_nothing_registered_is_not_found(vault: SiteVault) -> None:
    with pytest.raises(TesseraError) as caught:
        read_current(vault, "cohort")
    assert caught.value.code is ErrorCode.NOT_FOUND
    assert current_version(vault.site, "cohort") is None


@pytest.mark.parametrize("actor", ["", "   ", "x" * 129])
def test_an_actor_is_required(vault: SiteVault, tmp_path: Path, actor: str) -> None:
    path = write(tmp_path, "a.csv", to_csv(base_rows()))
    before = folder_digest(vault.site.root)
    with pytest.raises(TesseraError) as caught:
        register_dataset(vault, path, plan=PLAN, policy=Policy(), actor=actor)
    assert caught.value.code is ErrorCode.CONFIG_INVALID
    assert folder_digest(vault.site.root) == before


def test_events_and_versions_carry_no_patient_ids(vault: SiteVault, tmp_path: Path) -> None:
    rows = base_rows()
    rows[0][0] = SECRET_ID
    path = write(tmp_path, "a.csv", to_csv(rows + rows[:1]))
    version = register_dataset(vault, path, plan=PLAN, policy=Policy(duplicates="drop"),
                               actor="ann")
    with SiteStore.open(vault.site) as store:
        events = store.events()
    assert SECRET_ID not in repr(version.to_json()) and SECRET_ID not in repr(events)
    assert SECRET_ID.encode() not in vault.site.db_path.read_bytes()


def test_checking_writes_nothing_and_a_missing_file_is_not_found(
        vault: SiteVault, tmp_path: Path) -> None:
    before = folder_digest(vault.site.root)
    report = check_dataset(write(tmp_path, "a.csv", to_csv(base_rows())), plan=PLAN)
    assert report.ok
    with pytest.raises(TesseraError) as caught:
        check_dataset(tmp_path / "absent.csv", plan=PLAN)
    assert caught.value.code is ErrorCode.NOT_FOUND
    assert folder_digest(vault.site.root) == before
