"""A site's split is its own: the same rows held out in every study and for every plan
seed, different at another site, and untouched by consent."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from client_app.custody.vault import SiteVault, create_vault
from client_app.datasets.validation import Policy
from client_app.datasets.versions import register_content
from client_app.governance.consent import withdraw
from client_app.learning import site_data
from client_app.learning.site_data import load_split
from client_app.store.folder import init_site_dir
from common.datasets import csv_bytes, load_bundled, select
from common.plan import StudyPlan, bundled_plan_path, load_plan

PLAN = load_plan(bundled_plan_path("breast_cancer"))


def _site(tmp_path: Path, name: str) -> SiteVault:
    vault = create_vault(init_site_dir(tmp_path / name, name=name), "split test passphrase")
    data = select(load_bundled(PLAN.dataset.name), PLAN.dataset)
    register_content(vault, csv_bytes(data), source_name=f"{name}.csv", plan=PLAN,
                     policy=Policy(), actor="ops")
    return vault


def _variant(*, seed: int, name: str) -> StudyPlan:
    raw = PLAN.model_dump()
    raw["study"]["seed"], raw["study"]["name"] = seed, name
    return StudyPlan.model_validate(raw)


def _held_out(vault: SiteVault, plan: StudyPlan) -> set[str]:
    return {str(p) for p in load_split(vault, plan).test.patient_ids}


def test_the_held_out_rows_are_the_same_across_studies_and_seeds(tmp_path: Path) -> None:
    vault = _site(tmp_path, "h1")
    first = _held_out(vault, PLAN)
    for seed, name in ((1, "other_study"), (987654, "third_study")):
        assert _held_out(vault, _variant(seed=seed, name=name)) == first
    split = load_split(vault, PLAN)
    assert abs(len(split.test.y) / 569 - PLAN.dataset.test_fraction) < 0.05
    assert set(split.test.y) == {0, 1} and set(split.train.y) == {0, 1}
    assert not first & {str(p) for p in split.train.patient_ids}


def test_another_site_holds_out_other_rows_of_the_same_data(tmp_path: Path) -> None:
    one, two = _site(tmp_path, "h1"), _site(tmp_path, "h2")
    a, b = _held_out(one, PLAN), _held_out(two, PLAN)
    assert a != b
    assert len(a & b) < 0.5 * min(len(a), len(b))  # about a fifth overlap by chance


def test_withdrawn_patients_leave_without_moving_anyone_else(tmp_path: Path) -> None:
    vault = _site(tmp_path, "h1")
    before = load_split(vault, PLAN)
    gone = [str(before.test.patient_ids[0]), str(before.train.patient_ids[0])]
    withdraw(vault, gone, actor="ops")
    after = load_split(vault, PLAN)
    assert set(after.test.patient_ids) == set(before.test.patient_ids) - {gone[0]}
    assert set(after.train.patient_ids) == set(before.train.patient_ids) - {gone[1]}
    assert after.excluded_by_consent == 2


def test_the_split_carries_the_versions_public_digest(tmp_path: Path) -> None:
    vault = _site(tmp_path, "h1")
    split = load_split(vault, PLAN)
    assert len(split.public_version) == 64 and split.public_version != split.dataset_version
    assert np.isin(split.test.patient_ids, split.train.patient_ids).sum() == 0


def _tables(split) -> tuple:
    return tuple(np.asarray(a).tolist() for t in (split.train, split.test)
                 for a in (t.patient_ids, t.X, t.y))


def test_a_repeated_split_is_parsed_once_and_equals_a_fresh_one(tmp_path, monkeypatch) -> None:
    vault = _site(tmp_path, "h1")
    parses: list[str] = []
    real = site_data.read_csv_bytes
    monkeypatch.setattr(site_data, "read_csv_bytes",
                        lambda *a, **k: parses.append("parse") or real(*a, **k))
    first, second = load_split(vault, PLAN), load_split(vault, PLAN)
    assert len(parses) == 1
    assert _tables(second) == _tables(first)
    monkeypatch.setattr(site_data, "_PARSED", type(site_data._PARSED)())  # nothing kept
    assert _tables(load_split(vault, PLAN)) == _tables(first) and len(parses) == 2


def test_a_new_dataset_version_or_test_fraction_is_split_afresh(tmp_path: Path) -> None:
    vault = _site(tmp_path, "h1")
    before = load_split(vault, PLAN)
    raw = PLAN.model_dump()
    raw["dataset"]["test_fraction"] = 0.3
    wider = load_split(vault, StudyPlan.model_validate(raw))
    assert len(wider.test.y) > len(before.test.y)
    data = select(load_bundled(PLAN.dataset.name), PLAN.dataset)
    register_content(vault, csv_bytes(data.take(np.arange(400))), source_name="h1-v2.csv",
                     plan=PLAN, policy=Policy(), actor="ops")
    after = load_split(vault, PLAN)
    assert after.dataset_version != before.dataset_version
    assert len(after.train.y) + len(after.test.y) == 400
