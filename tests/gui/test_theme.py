"""Light and dark themes: every text colour meets WCAG AA (4.5:1) on what it is drawn on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtGui import QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QLabel

from client_app.store.folder import SiteDir
from client_app.store.site_store import SiteStore
from gui.pages.audit import AuditPage
from gui.pages.dashboard import DashboardPage
from gui.theme import (
    AA_TEXT,
    DARK,
    LIGHT,
    STATUS_BACKGROUNDS,
    TEXT_PAIRS,
    THEME_ENV_VAR,
    Theme,
    apply_theme,
    chosen_theme,
    contrast_ratio,
    current_theme,
)
from gui.window import MainWindow
from privacy.audit_log import AuditLog
from privacy.sealing import SealingKey
from privacy.signing import SigningKey
from tests.gui.conftest import open_page

THEMES = (LIGHT, DARK)


def test_contrast_ratio_matches_the_wcag_reference_values() -> None:
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast_ratio("#ffffff", "#000000") == pytest.approx(21.0)
    assert contrast_ratio("#123456", "#123456") == pytest.approx(1.0)
    # The classic borderline: #767676 passes AA on white, #777777 just fails.
    assert contrast_ratio("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)
    assert contrast_ratio("#777777", "#ffffff") < AA_TEXT
    with pytest.raises(ValueError, match="colour"):
        contrast_ratio("not a colour", "#ffffff")


@pytest.mark.parametrize("theme", THEMES, ids=lambda t: t.name)
@pytest.mark.parametrize("pair", TEXT_PAIRS, ids=lambda p: f"{p[0]}-on-{p[1]}")
def test_every_text_pair_of_both_palettes_meets_aa(theme: Theme, pair: tuple[str, str]) -> None:
    text, background = pair
    ratio = contrast_ratio(theme.roles[text], theme.roles[background])
    assert ratio >= AA_TEXT, f"{theme.name}: {text} on {background} is {ratio:.2f}:1"


@pytest.mark.parametrize("theme", THEMES, ids=lambda t: t.name)
def test_status_and_plot_colours_meet_aa_on_every_background_they_are_drawn_on(
    theme: Theme,
) -> None:
    colours = {**theme.status, "plot accent": theme.accent, "plot warning": theme.warn}
    assert set(theme.status) == {"critical", "warning", "info", "ok"}
    for name, colour in colours.items():
        for background in STATUS_BACKGROUNDS:
            ratio = contrast_ratio(colour, theme.roles[background])
            assert ratio >= AA_TEXT, f"{theme.name}: {name} on {background} is {ratio:.2f}:1"


@pytest.fixture
def themed(qapp: QApplication) -> Iterator[QApplication]:
    """Restores the application's palette and style after a test applies a theme."""
    palette, style = qapp.palette(), qapp.style().name()
    yield qapp
    qapp.setStyle(style)
    qapp.setPalette(palette)


def test_the_chosen_theme_is_the_palette_the_app_draws_with(
    themed: QApplication, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(THEME_ENV_VAR, "dark")
    assert chosen_theme() is DARK
    assert apply_theme(themed) is DARK and current_theme() is DARK
    palette = QGuiApplication.palette()
    for role, colour in DARK.roles.items():
        assert palette.color(getattr(QPalette.ColorRole, role)).name() == colour, role
    monkeypatch.setenv(THEME_ENV_VAR, "light")
    assert apply_theme(themed) is LIGHT and current_theme() is LIGHT
    assert themed.style().name().lower() == "fusion"


@pytest.mark.parametrize("theme", THEMES, ids=lambda t: t.name)
def test_rendered_labels_and_status_texts_keep_aa_contrast(
    qtbot, themed: QApplication, window: MainWindow, site: SiteDir, theme: Theme,
) -> None:
    """In the real window: every label's text on the window, the attention items' status
    colours on the list, and the audit verdict, under both themes."""
    apply_theme(themed, theme)
    log = AuditLog.create(site.audit_dir / "site.log", party=site.name, role="site",
                          signing_key=SigningKey.generate(),
                          auditor_public_hex=SealingKey.generate().public_hex)
    log.append("ceiling_changed", actor="alice", details={"n": 1})
    with SiteStore.open(site) as store:
        store.set_ceiling(3.0, actor="alice")
    dashboard = open_page(qtbot, window, 0)
    assert isinstance(dashboard, DashboardPage)
    items = [dashboard.items.item(i) for i in range(dashboard.items.count())]
    coloured = [i for i in items if i.foreground().color().name() in theme.status.values()]
    assert coloured, "the attention items carry their status colour"
    base = dashboard.items.palette().color(QPalette.ColorRole.Base).name()
    for item in coloured:
        assert contrast_ratio(item.foreground().color().name(), base) >= AA_TEXT
    for page in window.pages:
        for label in page.findChildren(QLabel):
            palette = label.palette()
            text = palette.color(label.foregroundRole()).name()
            ground = palette.color(label.backgroundRole()).name()
            ratio = contrast_ratio(text, ground)
            assert ratio >= AA_TEXT, f"{page.title}: {label.text()[:40]!r} is {ratio:.2f}:1"
    audit = open_page(qtbot, window, 6)
    assert isinstance(audit, AuditPage)
    with qtbot.waitSignal(audit.runner.done, timeout=30_000):
        audit.verify_button.click()
    colour = audit.result.palette().color(QPalette.ColorRole.WindowText).name()
    assert colour == theme.status["ok"] and audit.result.text().startswith("INTACT")
    assert contrast_ratio(colour, theme.roles["Window"]) >= AA_TEXT
