"""Patient consent: withdraw, grant, import an opt-out list, history, and no id in plain sight."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from client_app.custody.vault import SiteVault, open_or_create_vault, unlock_vault
from client_app.governance.audit_trail import log_path, sync
from client_app.governance.consent import (
    GLOBAL_SCOPE,
    grant,
    history,
    import_opt_out,
    withdraw,
    withdrawn_ids,
    without_patients,
)
from client_app.store.folder import SiteDir, init_site_dir
from client_app.store.site_store import SiteStore
from common.datasets import TableData
from common.errors import ErrorCode, TesseraError
from common.plan import bundled_plan_path, load_plan, override
from tests.conftest import TEST_PASSPHRASE


@pytest.fixture()
def vault(tmp_path: Path) -> SiteVault:
    site = init_site_dir(tmp_path / "site", name="north")
    return open_or_create_vault(site, TEST_PASSPHRASE)


def _events(site: SiteDir, kind: str) -> list[dict[str, object]]:
    with SiteStore.open(site) as store:
        return [e.details for e in store.events(kind=kind)]


def _folder_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_withdrawal_is_global_by_default_and_grant_restores_it(vault: SiteVault) -> None:
    assert withdraw(vault, ["MRN-1001", "MRN-1002"], actor="alice", note="letter") == 2
    assert withdrawn_ids(vault, study="cardio") == {"MRN-1001", "MRN-1002"}
    assert withdrawn_ids(vault, study="onco") == {"MRN-1001", "MRN-1002"}
    assert grant(vault, ["MRN-1001"], actor="bob") == 1
    assert withdrawn_ids(vault, study="cardio") == {"MRN-1002"}
    events = history(vault)
    assert [(e.action, e.patient_id, e.actor) for e in events] == [
        ("grant", "MRN-1001", "bob"), ("withdraw", "MRN-1002", "alice"),
        ("withdraw", "MRN-1001", "alice")]
    assert all(e.scope == GLOBAL_SCOPE and e.source == "manual" for e in events)
    assert events[-1].note == "letter"
    assert [d["count"] for d in _events(vault.site, "consent_withdrawn")] == [2]
    assert [d["count"] for d in _events(vault.site, "consent_granted")] == [1]


def test_study_scope_applies_to_that_study_only_and_the_latest_event_wins(
    vault: SiteVault,
) -> None:
    withdraw(vault, ["A"], actor="op", scope="cardio")
    assert withdrawn_ids(vault, study="cardio") == {"A"}
    assert withdrawn_ids(vault, study="onco") == set()
    grant(vault, ["A"], actor="op", scope="cardio")
    withdraw(vault, ["B"], actor="op")
    grant(vault, ["B"], actor="op", scope="onco")  # back in for onco only
    assert withdrawn_ids(vault, study="onco") == set()
    assert withdrawn_ids(vault, study="cardio") == {"B"}
    withdraw(vault, ["B"], actor="op")  # a later global withdrawal covers onco again
    assert withdrawn_ids(vault, study="onco") == {"B"}
    assert [e.scope for e in history(vault, scope="onco")] == ["onco"]


def test_repeating_a_change_writes_nothing(vault: SiteVault) -> None:
    assert withdraw(vault, ["A", "A", " A "], actor="op") == 1
    assert withdraw(vault, ["A"], actor="op") == 0
    assert grant(vault, ["C"], actor="op") == 0  # included already: nothing to grant
    assert len(history(vault)) == 1
    assert len(_events(vault.site, "consent_withdrawn")) == 1
    assert _events(vault.site, "consent_granted") == []


def test_bad_arguments_are_refused_and_name_no_id(vault: SiteVault) -> None:
    with pytest.raises(TesseraError) as err:
        withdraw(vault, ["A"], actor=" ")
    assert err.value.code is ErrorCode.CONFIG_INVALID and "actor" in err.value.message
    with pytest.raises(TesseraError) as err:
        withdraw(vault, [], actor="op")
    assert err.value.code is ErrorCode.CONFIG_INVALID
    with pytest.raises(TesseraError) as err:
        grant(vault, ["ok-id", "bad\x00SECRET-ID"], actor="op")
    assert err.value.code is ErrorCode.DATA_INVALID
    assert "patient id 2" in err.value.message and "SECRET" not in err.value.message
    assert history(vault) == []


def test_opt_out_csv_is_imported_as_one_batch_with_duplicates_counted_once(
    vault: SiteVault, tmp_path: Path
) -> None:
    withdraw(vault, ["P3"], actor="op")
    source = tmp_path / "optout.csv"
    source.write_text("name,patient_id\nx,P1\ny,P2\n\nz,P1\nw,P3\n", encoding="utf-8")
    result = import_opt_out(vault, source, actor="registry-clerk", scope="cardio")
    assert (result.withdrawn, result.unchanged) == (2, 1)
    imported = [e for e in history(vault) if e.source == "import"]
    assert sorted(e.patient_id for e in imported) == ["P1", "P2"]
    assert {e.batch for e in imported} == {result.batch}
    assert withdrawn_ids(vault, study="cardio") == {"P1", "P2", "P3"}
    (details,) = _events(vault.site, "consent_imported")
    assert details["count"] == 2 and details["unchanged"] == 1
    assert details["batch"] == result.batch and details["scope"] == "cardio"


def test_opt_out_list_with_one_id_per_line_is_accepted(vault: SiteVault, tmp_path: Path) -> None:
    source = tmp_path / "optout.txt"
    source.write_text("\ufeffP7\r\nP8\r\n\r\nP7\r\n", encoding="utf-8")
    result = import_opt_out(vault, source, actor="op")
    assert (result.withdrawn, result.unchanged) == (2, 0)
    assert withdrawn_ids(vault, study="any") == {"P7", "P8"}


@pytest.mark.parametrize(("content", "expected"), [
    (b"name,mrn\nx,P1\n", "needs a 'patient_id' column"),
    (b"patient_id,name\nP1,x\nP2\n", "line 3 has 1 cells"),
    (b"P1\n\xff\xfeP2\n", "not UTF-8"),
    (b"patient_id\n\n", "no patient ids"),
    (b"P1\n" + b"x" * 200 + b"\n", "line 2: not a patient id"),
])
def test_a_bad_opt_out_file_is_refused_and_writes_nothing(
    vault: SiteVault, tmp_path: Path, content: bytes, expected: str
) -> None:
    withdraw(vault, ["P0"], actor="op")
    before = _folder_digest(vault.site.root)
    source = tmp_path / "optout.csv"
    source.write_bytes(content)
    with pytest.raises(TesseraError) as err:
        import_opt_out(vault, source, actor="op")
    assert err.value.code is ErrorCode.DATA_INVALID
    assert expected in err.value.message
    assert "P1" not in err.value.message
    assert _folder_digest(vault.site.root) == before


def test_missing_opt_out_file_is_not_found(vault: SiteVault, tmp_path: Path) -> None:
    with pytest.raises(TesseraError) as err:
        import_opt_out(vault, tmp_path / "nope.csv", actor="op")
    assert err.value.code is ErrorCode.NOT_FOUND


def test_history_needs_the_sites_own_key(vault: SiteVault, tmp_path: Path) -> None:
    withdraw(vault, ["P1"], actor="op")
    other = open_or_create_vault(init_site_dir(tmp_path / "other", name="south"),
                                 TEST_PASSPHRASE)
    foreign = SiteVault(vault.site, other.key)
    with pytest.raises(TesseraError) as err:
        history(foreign)
    assert err.value.code is ErrorCode.DATA_INVALID


def test_withdrawn_rows_are_removed_from_a_table() -> None:
    table = TableData(patient_ids=np.array(["A", "B", "C"]), X=np.arange(6.0).reshape(3, 2),
                      y=np.array([0, 1, 0]), features=("f1", "f2"), label="y")
    kept, dropped = without_patients(table, frozenset({"B", "Z"}))
    assert dropped == 1 and list(kept.patient_ids) == ["A", "C"]
    assert kept.X.tolist() == [[0.0, 1.0], [4.0, 5.0]]
    same, none = without_patients(table, frozenset())
    assert same is table and none == 0


def test_no_patient_id_in_any_plain_file_of_a_provisioned_site(tmp_path: Path) -> None:
    from tessera import local_federation

    plan = override(load_plan(bundled_plan_path("breast_cancer")), rounds=1)
    fed = local_federation.build(tmp_path / "w", plan, sites=2, ceilings={},
                                 passphrase=TEST_PASSPHRASE, tls=True)
    vault = unlock_vault(fed.sites[0], TEST_PASSPHRASE)
    demo = [e.patient_id for e in history(vault)]
    assert len(demo) == 2  # the demo's own opt-outs
    assert all(e.note == "opted out" and e.actor == "demo-operator" for e in history(vault))
    ids = ["MRN-77-SECRET", "MRN-88-SECRET"]
    withdraw(vault, ids, actor="op", scope=plan.name)
    grant(vault, ids[:1], actor="op", scope=plan.name)
    assert sync(vault) > 0
    assert log_path(vault).exists()
    assert withdrawn_ids(vault, study=plan.name) == {*demo, ids[1]}
    for path in fed.sites[0].root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for patient in [*ids, *demo]:
                assert patient.encode() not in data, (path.name, "holds a patient id")
    kinds = _events(fed.sites[0], "consent_withdrawn")
    assert [d["count"] for d in kinds] == [2, 2]
    assert all(len(r) == 8 for d in kinds for r in d["refs"])  # type: ignore[union-attr]
