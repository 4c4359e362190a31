"""``tessera site report``: the participation report from the command line."""

from __future__ import annotations

from pathlib import Path

from client_app.governance.studies import receive_plan
from client_app.store.folder import open_site_dir
from common.plan import bundled_plan_path
from tests.client_app.cli.conftest import invoke


def test_report_writes_a_pdf_and_an_html_page(site_dir: Path, tmp_path: Path) -> None:
    receive_plan(open_site_dir(site_dir),
                 bundled_plan_path("breast_cancer").read_text(encoding="utf-8"))
    for name in ("report.pdf", "report.html"):
        out = tmp_path / name
        result = invoke("report", "--site-dir", str(site_dir), "--study", "breast_cancer",
                        "--out", str(out))
        assert result.exit_code == 0, result.output
        assert f"written to {out}" in result.output
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")
    assert "Participation report" in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_an_unknown_study_or_format_exits_non_zero_and_writes_nothing(
    site_dir: Path, tmp_path: Path,
) -> None:
    result = invoke("report", "--site-dir", str(site_dir), "--study", "nope",
                    "--out", str(tmp_path / "r.pdf"))
    assert result.exit_code != 0 and "no study named" in result.output
    receive_plan(open_site_dir(site_dir),
                 bundled_plan_path("breast_cancer").read_text(encoding="utf-8"))
    result = invoke("report", "--site-dir", str(site_dir), "--study", "breast_cancer",
                    "--out", str(tmp_path / "r.docx"))
    assert result.exit_code != 0 and ".pdf or .html" in result.output
    assert list(tmp_path.glob("r.*")) == []
