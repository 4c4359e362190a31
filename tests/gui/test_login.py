"""Start-up: the passphrase dialog, and start-up errors shown as messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLineEdit

from client_app.facade import SiteOperator
from client_app.store.folder import SiteDir
from gui.app import default_policy, run_app
from gui.login import LoginDialog
from tests.conftest import TEST_PASSPHRASE
from tests.gui.conftest import Answers


def _dialog(qtbot, site: SiteDir) -> LoginDialog:
    def unlock(name: str, passphrase: str) -> SiteOperator:
        return SiteOperator.open(site.root, passphrase=passphrase, actor=name,
                                 policy=default_policy())

    dialog = LoginDialog(site.name, unlock, actor="alice")
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def test_a_wrong_passphrase_says_so_and_lets_the_operator_try_again(qtbot, site: SiteDir) -> None:
    dialog = _dialog(qtbot, site)
    assert dialog.passphrase_edit.echoMode() == QLineEdit.EchoMode.Password
    qtbot.keyClicks(dialog.passphrase_edit, "not the passphrase")
    qtbot.mouseClick(dialog.unlock_button, Qt.MouseButton.LeftButton)
    assert dialog.isVisible() and dialog.operator is None
    assert dialog.message.text() == "Wrong passphrase; try again."
    assert dialog.passphrase_edit.text() == ""

    with qtbot.waitSignal(dialog.accepted):
        qtbot.keyClicks(dialog.passphrase_edit, TEST_PASSPHRASE)
        qtbot.keyClick(dialog.passphrase_edit, Qt.Key.Key_Return)
    assert dialog.operator is not None
    assert dialog.operator.actor == "alice"
    assert dialog.operator.site.name == site.name
    assert dialog.passphrase_edit.text() == ""


def test_the_operator_must_give_a_name(qtbot, site: SiteDir) -> None:
    dialog = _dialog(qtbot, site)
    dialog.name_edit.clear()
    qtbot.keyClicks(dialog.passphrase_edit, TEST_PASSPHRASE)
    qtbot.mouseClick(dialog.unlock_button, Qt.MouseButton.LeftButton)
    assert dialog.operator is None
    assert "Enter your name" in dialog.message.text()


def _not_a_site(tmp_path: Path) -> Path:
    folder = tmp_path / "papers"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a site", encoding="utf-8")
    return folder


def test_opening_a_folder_that_is_not_a_site_shows_a_message_not_a_traceback(
    qtbot, tmp_path: Path, answers: Answers,
) -> None:
    code = run_app(_not_a_site(tmp_path), policy=default_policy(), actor="alice")
    assert code == 4
    assert len(answers.errors) == 1
    assert "not initialised" in answers.errors[0]


def test_tessera_site_gui_opens_the_app_under_the_access_policy(
    qtbot, tmp_path: Path, answers: Answers,
) -> None:
    from typer.testing import CliRunner

    from tessera.cli import app

    result = CliRunner().invoke(app, ["site", "gui", "--site-dir", str(_not_a_site(tmp_path)),
                                      "--operator", "alice"])
    assert result.exit_code == 4, result.output
    assert len(answers.errors) == 1 and "not initialised" in answers.errors[0]
    assert default_policy().roles_for("site gui") == default_policy().roles_for("gui audit.verify")


def test_an_empty_or_missing_folder_opens_the_first_run_wizard(
    qtbot, tmp_path: Path, answers: Answers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gui import app as app_module

    opened: list[tuple[Path, bool]] = []

    def wizard(site_dir: Path, *, policy: object, actor: str | None,
               kit_imported: bool) -> None:
        opened.append((site_dir, kit_imported))
        return None  # the operator cancelled

    monkeypatch.setattr(app_module, "first_run", wizard)
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "missing"):
        assert run_app(folder, policy=default_policy(), actor="alice") == 0
    assert opened == [(tmp_path / "empty", False), (tmp_path / "missing", False)]
    assert answers.errors == []
