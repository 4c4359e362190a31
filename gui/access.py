"""Role gating of the app's actions: what the operator's role may not do is disabled.

A gated widget is enabled only when the policy allows its action *and* the page's own
condition holds (a row is selected...); when the role forbids it, its tooltip says which
role the action needs.
"""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from client_app.facade import SiteOperator
from gui.text import tr

_ALLOWED = "tessera_allowed"


def gate(widget: QWidget, operator: SiteOperator, action: str, *, tooltip: str = "") -> bool:
    """Bind ``widget`` to ``action`` (``"gui page.action"``); returns whether it is allowed."""
    reason = operator.denial(action)
    widget.setProperty(_ALLOWED, reason is None)
    widget.setToolTip(tooltip if reason is None
                      else tr("Not available: {reason}").format(reason=reason))
    widget.setEnabled(reason is None)
    return reason is None


def enable(widget: QWidget, condition: bool = True) -> None:
    """Enable a gated widget if its role allows it and ``condition`` holds."""
    allowed = widget.property(_ALLOWED)
    widget.setEnabled(bool(condition) and allowed is not False)
