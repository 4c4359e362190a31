"""Lays a participation report out as a PDF (fpdf2) or a self-contained HTML page.

The content is :class:`~client_app.governance.participation.ParticipationReport`; this module
only typesets it: a title block, one heading per section, paragraphs, and tables with a
header row. PDF text uses the PDF core fonts, so characters outside Latin-1 are replaced.
The file is written atomically with private permissions.
"""

from __future__ import annotations

import html
from pathlib import Path

from client_app.governance.participation import ParticipationReport, Section
from common.errors import ErrorCode, TesseraError
from common.files import atomic_write_bytes

FORMATS = (".pdf", ".html")
_TITLE = "Participation report"


def _latin(text: str) -> str:
    return text.replace("\u2026", "...").encode("latin-1", "replace").decode("latin-1")


def _subtitle(report: ParticipationReport) -> str:
    when = report.generated_at.strftime("%Y-%m-%d %H:%M UTC")
    return f"Site {report.site}, study {report.study}. Generated {when}."


def render_html(report: ParticipationReport) -> str:
    """A standalone HTML page (no scripts, no external resources)."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{_TITLE}: {html.escape(report.study)}</title>"
             "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto;color:#111;"
             "background:#fff}table{border-collapse:collapse;margin:.5em 0}"
             "th,td{border:1px solid #999;padding:.25em .5em;text-align:left}"
             "th{background:#eee}</style></head><body>",
             f"<h1>{_TITLE}</h1><p>{html.escape(_subtitle(report))}</p>"]
    for section in report.sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts.extend(f"<p>{html.escape(p)}</p>" for p in section.paragraphs)
        if section.table:
            head, *rows = section.table
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head)
                         + "</tr>")
            parts.extend("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                         for row in rows)
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _pdf_table(pdf: object, section: Section) -> None:
    from fpdf import FPDF

    assert isinstance(pdf, FPDF)
    pdf.set_font("Helvetica", size=9)
    with pdf.table(text_align="LEFT", line_height=5) as table:
        for cells in section.table:
            row = table.row()
            for cell in cells:
                row.cell(_latin(cell))
    pdf.ln(3)


def render_pdf(report: ParticipationReport) -> bytes:
    """The report as PDF bytes (A4, core fonts)."""
    from fpdf import FPDF  # loaded only when a report is written

    pdf = FPDF(format="A4")
    pdf.set_title(_latin(f"{_TITLE}: {report.study}"))
    pdf.set_author(_latin(f"Tessera site {report.site}"))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=18)
    pdf.cell(0, 10, _TITLE, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    pdf.multi_cell(0, 5, _latin(_subtitle(report)), new_x="LMARGIN", new_y="NEXT")
    for section in report.sections:
        pdf.ln(3)
        pdf.set_font("Helvetica", style="B", size=13)
        pdf.cell(0, 8, _latin(section.title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=10)
        for paragraph in section.paragraphs:
            pdf.multi_cell(0, 5, _latin(paragraph), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        if section.table:
            _pdf_table(pdf, section)
    return bytes(pdf.output())


def write_report(report: ParticipationReport, out: Path) -> Path:
    """Write ``report`` to ``out``; the format follows its suffix (``.pdf`` or ``.html``)."""
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"--out: the report is written as .pdf or .html, not {out.name!r}")
    if out.is_dir():
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"--out: {out} is a folder, not a file")
    content = render_pdf(report) if suffix == ".pdf" else render_html(report).encode("utf-8")
    atomic_write_bytes(out, content)
    return out
