"""Records in plain language: sentences, one actor vocabulary, short hashes, label names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from client_app.governance.narration import (
    SITE_AGENT,
    activity,
    actor_name,
    label_names,
    narrate,
    release_sentence,
    short_hash,
)
from client_app.store.events import SiteEvent
from common.plan import bundled_plan_path, load_plan

DIGEST = "6723" + "ab" * 28 + "d52d3"[:4]


def test_an_update_reads_as_a_sentence_naming_round_and_study() -> None:
    text = narrate("update_sent", {"run_id": "1", "round": 2, "digest": "f" * 64},
                   study="breast_cancer")
    assert text == "Sent an encrypted update for round 2 of breast_cancer"


def test_a_shared_key_names_the_recipient_and_a_short_fingerprint() -> None:
    text = narrate("he_key_sealed", {"recipient": "site-2", "fingerprint": "6723" + "0" * 55
                                     + "d52d3"}, study="s")
    assert text == "Key shared with site-2 (fingerprint 672300...d52d3)"


@pytest.mark.parametrize("kind", [k.value for k in SiteEvent])
def test_every_event_kind_reads_without_raw_dicts_lists_or_none(kind: str) -> None:
    details = {"batch": None, "refs": ["fccbef76", "0011"], "issues": {"outlier": 30},
               "round": 1, "actor": "alice", "contributors": ["a", "b"], "count": 3}
    text = narrate(kind, details, study="breast_cancer")
    for raw in ("{", "[", "None", "=", "_"):
        assert raw not in text.replace("breast_cancer", "study"), (kind, text)


def test_an_unknown_kind_still_gets_a_sentence_from_its_scalar_details() -> None:
    text = narrate("drift_checked", {"rows": 40, "shift": 0.125, "refs": ["x"], "x": None})
    assert text == "Drift checked (refs: 1; rows 40; shift 0.125)"


@pytest.mark.parametrize(("details", "actor"), [
    ({"actor": "alice"}, "alice"), ({"actor": "site"}, SITE_AGENT),
    ({"actor": "site-agent"}, SITE_AGENT), ({}, SITE_AGENT), ({"party": "bob"}, "bob"),
    ({"actor": "init"}, "site set-up"),
])
def test_one_actor_vocabulary(details: dict[str, str], actor: str) -> None:
    assert actor_name(details) == actor


def test_short_hash_keeps_both_ends_and_leaves_short_text_alone() -> None:
    assert short_hash("0123456789abcdef" * 4) == "012345...bcdef"
    assert short_hash("abc") == "abc"
    assert short_hash(None) == ""


def test_label_names_come_from_the_data_dictionary() -> None:
    names = label_names(load_plan(bundled_plan_path("breast_cancer")))
    assert (names.positive, names.negative) == ("benign", "not benign")
    assert "benign" in names.description and "malignant" in names.description


def test_a_ledger_row_explains_round_mechanism_and_epsilon_added() -> None:
    text = release_sentence(kind="dp_sgd", mechanism="poisson_subsampled_gaussian", round_=2,
                            study="breast_cancer", dataset="bc", added=0.512, alone=1.862,
                            cumulative=3.0)
    assert text.startswith("Round 2 of breast_cancer: local DP-SGD training with subsampled "
                           "Gaussian noise added epsilon 0.512 to bc, 3.000 spent in total")
    assert "alone: epsilon 1.862" in text
    other = release_sentence(kind="drift_stats", mechanism="laplace", round_=0, study="s",
                             dataset="d", added=0.1, alone=0.1, cumulative=0.1)
    assert "drift stats with laplace added epsilon 0.100" in other


def test_an_activity_keeps_the_raw_record_one_click_away() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    item = activity(at=at, kind="update_sent", details={"round": 1, "digest": "d" * 64},
                    plan_hash=DIGEST, studies={DIGEST: "breast_cancer"})
    assert item.study == "breast_cancer" and item.actor == SITE_AGENT
    assert '"digest": "' + "d" * 64 in item.raw


def test_a_resent_reply_says_that_nothing_new_was_computed() -> None:
    text = narrate("reply_resent", {"run_id": "1", "task": "open_counts", "round": 2,
                                    "digest": "f" * 64}, study="s")
    assert text == ("Sent the same open counts answer for round 2 of s again (asked again "
                    "after a coordinator restart; nothing new computed or released)")
