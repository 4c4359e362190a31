"""The desktop app's entry point: ``tessera-site-gui --site-dir DIR`` (or ``tessera site gui``).

A missing or empty folder (or one with only a kit imported) opens the first-run wizard.
Otherwise it opens the site folder, asks for the operator's name and the site passphrase (unless
``TESSERA_SITE_PASSPHRASE`` is set), and shows the main window. The access policy is the
installed ``tessera/roles.toml`` (read as a data file), or ``TESSERA_POLICY``, or the
policy ``tessera site gui`` passes in. The app draws with the light or dark theme of
:mod:`gui.theme` (the system's choice, or ``TESSERA_THEME``).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from PySide6.QtWidgets import QApplication, QDialog

from client_app.facade import SiteOperator, load_access_policy, site_name, site_state
from common.errors import ErrorCode, TesseraError
from common.roles import Policy, parse_policy
from gui import dialogs
from gui.login import LoginDialog
from gui.text import tr
from gui.theme import apply_theme
from gui.window import MainWindow
from gui.wizard import FirstRunWizard
from privacy.passphrase import PASSPHRASE_ENV_VAR

POLICY_ENV_VAR = "TESSERA_POLICY"
WINDOW_SIZE = (1280, 800)


def default_policy() -> Policy:
    """``$TESSERA_POLICY``, else the roles.toml installed with the ``tessera`` package."""
    chosen = os.environ.get(POLICY_ENV_VAR)
    if chosen:
        return load_access_policy(Path(chosen))
    try:
        text = resources.files("tessera").joinpath("roles.toml").read_text(encoding="utf-8")
    except (OSError, ModuleNotFoundError) as exc:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"the access policy roles.toml cannot be read ({type(exc).__name__}); "
                           f"set {POLICY_ENV_VAR}") from None
    return parse_policy(text)


def default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def open_operator(site_dir: Path, *, policy: Policy, kit: Path | None = None,
                  actor: str | None = None) -> SiteOperator | None:
    """Unlock the site: from the environment's passphrase, else by asking; None if cancelled."""
    name = site_name(site_dir)
    who = actor or default_actor()

    def unlock(operator_name: str, passphrase: str) -> SiteOperator:
        return SiteOperator.open(site_dir, passphrase=passphrase, actor=operator_name,
                                 policy=policy, kit=kit)

    from_env = os.environ.get(PASSPHRASE_ENV_VAR)
    if from_env and who:
        try:
            return unlock(who, from_env)
        except TesseraError as err:
            if err.code != ErrorCode.WRONG_PASSPHRASE:
                raise
            dialogs.show_error(None, tr("{variable} does not open site {name}; enter the "
                                        "passphrase.").format(variable=PASSPHRASE_ENV_VAR,
                                                              name=name))
    dialog = LoginDialog(name, unlock, actor=who)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    return dialog.operator


def first_run(site_dir: Path, *, policy: Policy, actor: str | None,
              kit_imported: bool) -> SiteOperator | None:
    """The first-run wizard on a new site folder; the unlocked site, or None if cancelled."""
    wizard = FirstRunWizard(site_dir, policy=policy, actor=actor or default_actor(),
                            kit_imported=kit_imported)
    wizard.exec()
    return wizard.operator  # set once the keystore exists, even if the last step is skipped


def run_app(site_dir: Path, *, policy: Policy | None = None, kit: Path | None = None,
            actor: str | None = None) -> int:
    """Open the app on ``site_dir`` and run it until the window closes; the exit status."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("Tessera site")
    apply_theme(app)
    try:
        chosen = policy or default_policy()
        state = site_state(site_dir)
        if state in ("new", "kit"):
            operator = first_run(site_dir, policy=chosen, actor=actor,
                                 kit_imported=state == "kit")
        else:
            operator = open_operator(site_dir, policy=chosen, kit=kit, actor=actor)
    except Exception as exc:  # the GUI boundary: a message, never a traceback
        dialogs.show_error(None, dialogs.error_text(exc))
        code = exc.exit_code if isinstance(exc, TesseraError) else 12
        return code
    if operator is None:
        return 0
    window = MainWindow(operator)
    window.resize(*WINDOW_SIZE)
    window.show()
    return app.exec()


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``tessera-site-gui``)."""
    parser = argparse.ArgumentParser(prog="tessera-site-gui",
                                     description=tr("Tessera's site operator desktop app."))
    parser.add_argument("--site-dir", type=Path, required=True, help=tr("The site folder."))
    parser.add_argument("--operator", help=tr("Your name, recorded with every decision "
                        "(default: your login name)."))
    parser.add_argument("--kit", type=Path, help=tr("Your kit folder (default: the site's)."))
    parser.add_argument("--smoke-test", action="store_true",
                        help=tr("Offscreen: open the site, render every page, exit 0 if all "
                                "rendered (passphrase from {variable}).").format(
                                    variable=PASSPHRASE_ENV_VAR))
    args = parser.parse_args(argv)
    if args.smoke_test:
        from gui.smoke import run_smoke_test

        sys.exit(run_smoke_test(args.site_dir, policy=default_policy(), kit=args.kit))
    sys.exit(run_app(args.site_dir, kit=args.kit, actor=args.operator))


if __name__ == "__main__":
    main()
