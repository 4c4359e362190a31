"""The participation report: its content from the site store, as PDF and HTML."""

from __future__ import annotations

from pathlib import Path

import pypdfium2 as pdfium
import pytest

from client_app.custody.site_secrets import ledger_key
from client_app.custody.vault import SiteVault, create_vault
from client_app.governance.participation import build_report
from client_app.governance.report_render import render_html, write_report
from client_app.governance.studies import decide, receive_plan
from client_app.store.folder import SiteDir, init_site_dir
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.plan import bundled_plan_path


@pytest.fixture
def site(tmp_path: Path) -> SiteDir:
    return init_site_dir(tmp_path / "h1", name="h1", ceiling=6.0)


@pytest.fixture
def vault(site: SiteDir) -> SiteVault:
    return create_vault(site, "report test passphrase")


@pytest.fixture
def digest(vault: SiteVault) -> str:
    """A study this site approved, trained two rounds of and evaluated."""
    site = vault.site
    plan = receive_plan(site, bundled_plan_path("breast_cancer").read_text(encoding="utf-8"))
    decide(site, plan.plan_hash, "approved", actor="dr-jones", note="ethics ref 12")
    with SiteStore.open(site, ledger_key=ledger_key(vault)) as store:
        store.set_delta(1e-5, actor="dr-jones")
        for round_ in (1, 2):
            store.record_training(plan_hash=plan.plan_hash, study="breast_cancer", run_id="r1",
                                  round=round_, dataset_id="breast_cancer",
                                  dataset_version="v1", noise_multiplier=1.1,
                                  sample_rate=0.05, steps=40)
            store.record_event("update_sent", plan_hash=plan.plan_hash,
                               details={"run_id": "r1", "round": round_, "digest": "d" * 64})
        store.record_event("importance_shared", plan_hash=plan.plan_hash,
                           details={"run_id": "r1", "rows": 23})
        store.record_event("consent_withdrawn", details={"scope": "*", "count": 2,
                                                         "actor": "dr-jones", "refs": []})
        store.record_event("local_evaluation", plan_hash=plan.plan_hash, details={
            "model": "m", "n": 23, "accuracy": 0.913, "auc": 0.97, "tp": 12, "fp": 1,
            "tn": 9, "fn": 1})
    return plan.plan_hash


def test_the_report_says_who_approved_what_left_and_what_it_cost(
    site: SiteDir, digest: str,
) -> None:
    report = build_report(site, "breast_cancer")
    assert report.plan_hash == digest and report.site == "h1"
    approval = report.section("Approval")
    assert approval.table[1][1:] == ("approved", "dr-jones", "ethics ref 12")
    left = dict((row[0], row[1:]) for row in report.section("What left the site").table[1:])
    # events recorded without a size (as before sizes were kept) say so
    assert left["Encrypted model updates"] == ("2", "1, 2", "-", "not recorded")
    assert left["Feature importance"] == ("1", "-", "23", "not recorded")
    [header, row] = report.section("Privacy budget").table
    assert header[0] == "dataset" and row[0].startswith("breast_cancer (local DP-SGD")
    assert row[1] == "0.000" and float(row[2]) > 0 and row[4] == "6"
    assert "2 withdrawal(s)" in report.section("Consent").paragraphs[0]
    model = report.section("The model at this site")
    assert "Positive means benign; negative means not benign." in model.paragraphs
    assert ("accuracy", "0.913") in model.table
    assert report.audit_intact is None  # no kit, no audit log: said, not hidden
    assert report.section("Audit trail").paragraphs[0].startswith("This site keeps no audit")


def test_the_pdf_renders_and_its_first_page_reads_as_the_report(
    site: SiteDir, digest: str, tmp_path: Path,
) -> None:
    out = write_report(build_report(site, digest), tmp_path / "report.pdf")
    pdf = pdfium.PdfDocument(out)
    page = pdf[0]
    text = page.get_textpage().get_text_range()
    assert "Participation report" in text and "dr-jones" in text and digest[:20] in text
    bitmap = page.render(scale=1, grayscale=True)
    pixels = bitmap.to_numpy()
    assert pixels.shape[1] > 500
    dark = int((pixels < 128).sum())
    assert dark > 2000  # text was drawn, not a blank page
    pdf.close()


def test_html_escapes_and_a_bad_suffix_or_study_is_refused(
    site: SiteDir, digest: str, tmp_path: Path,
) -> None:
    page = render_html(build_report(site, digest))
    assert "<table>" in page and "ethics ref 12" in page and "<script" not in page
    with pytest.raises(TesseraError) as caught:
        write_report(build_report(site, digest), tmp_path / "report.docx")
    assert caught.value.code is ErrorCode.CONFIG_INVALID
    assert not (tmp_path / "report.docx").exists()
    with pytest.raises(TesseraError) as missing:
        build_report(site, "no-such-study")
    assert missing.value.code is ErrorCode.NOT_FOUND


def test_the_report_states_bytes_sent_per_release_and_fairness_per_group(
    vault: SiteVault, tmp_path: Path,
) -> None:
    """Sizes come from the release events, fairness from the local evaluation's group counts:
    the PDF's text says both and never prints a released value."""
    site = vault.site
    plan = receive_plan(site, bundled_plan_path("diabetes").read_text(encoding="utf-8"))
    decide(site, plan.plan_hash, "approved", actor="dr-jones", note="")
    with SiteStore.open(site) as store:
        store.record_event("stats_sent", plan_hash=plan.plan_hash,
                           details={"run_id": "r1", "digest": "e" * 64, "bytes": 900})
        for round_, size in ((1, 400_000), (2, 600_000)):
            store.record_event("update_sent", plan_hash=plan.plan_hash, details={
                "run_id": "r1", "round": round_, "digest": "d" * 64, "bytes": size})
        store.record_event("model_released", plan_hash=plan.plan_hash,
                           details={"run_id": "r1", "round": 2, "contributors": []})
        store.record_event("local_evaluation", plan_hash=plan.plan_hash, details={
            "model": "m", "n": 40, "accuracy": 0.75, "auc": 0.8, "tp": 12, "fp": 4,
            "tn": 18, "fn": 6, "groups": {
                "1": {"tp": 8, "fp": 1, "tn": 10, "fn": 1},     # 20 rows
                "2": {"tp": 4, "fp": 3, "tn": 8, "fn": 5}}})    # 20 rows
    report = build_report(site, "diabetes")
    left = {row[0]: row for row in report.section("What left the site").table[1:]}
    assert report.section("What left the site").table[0][-1] == "size sent"
    assert left["Encrypted model updates"][-1] == "1.0 MB"
    assert left["Encrypted, noised feature statistics (round 0)"][-1] == "900 bytes"
    assert left["Decryption of the final model"][-1] == "not recorded"
    fairness = report.section("Fairness at this site")
    header, one, two = fairness.table
    assert header[0] == "sex" and "(TPR)" in header[3]
    # group 1: selection 9/20, TPR 8/9, FPR 1/11; group 2: 7/20, 4/9, 3/11
    assert one == ("1", "20", "0.450", f"{8 / 9:.3f}", f"{1 / 11:.3f}")
    assert two == ("2", "20", "0.350", f"{4 / 9:.3f}", f"{3 / 11:.3f}")
    assert "Demographic parity difference 0.100 (ratio 0.778)" in fairness.paragraphs[1]
    assert f"equalized odds difference {4 / 9:.3f}" in fairness.paragraphs[1]

    out = write_report(report, tmp_path / "report.pdf")
    pdf = pdfium.PdfDocument(out)
    text = "\n".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    pdf.close()
    assert "Fairness at this site" in text and "size sent" in text and "1.0 MB" in text
    assert "Demographic parity difference 0.100" in text
    page = render_html(report)
    assert "<td>0.450</td>" in page and "<td>1.0 MB</td>" in page


def test_without_a_grouped_evaluation_fairness_says_what_is_missing(
    site: SiteDir, digest: str,
) -> None:
    # breast_cancer names no sensitive column
    assert "no sensitive column" in build_report(site, digest).section(
        "Fairness at this site").paragraphs[0]
