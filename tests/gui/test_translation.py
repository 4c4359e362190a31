"""Every user-visible string in ``gui/`` goes through Qt's translation (``gui.text.tr``).

The method: the sources of ``gui/`` are parsed (``ast``) and *every* string literal, plain or
f-string, must be one of
- the text of a ``tr("...")`` call (or of ``noop("...")``, which marks a constant that is
  translated where it is shown, like Qt's ``QT_TR_NOOP``), a plain literal: an f-string can
  not be looked up in a translation, so the template goes through ``tr`` and the values
  through ``.format``;
- a docstring, or text with no words in it (punctuation, separators, bare HTML tags,
  colour codes, format placeholders);
- in a place the operator never reads: a dictionary key or subscript, a comparison, a
  keyword argument or call that names things for the program (facade actions and access
  rules, worker names, settings, logging, colours and line styles of plots, keyboard
  sequences, style sheets, file encodings, format specifications).
Anything else fails with its file and line: deny by default, so a new label or message
written without ``tr`` is caught whatever widget it ends up in. Strings shown by the app
that come from the facade (plain-language sentences, dashboard items) are built outside
``gui/`` and are not in this scan.

A second test checks that ``tr`` really reaches Qt's translators: with a translator
installed, the rendered window's navigation and page headings come out translated.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from PySide6.QtCore import QCoreApplication, Qt, QTranslator
from PySide6.QtWidgets import QAbstractButton, QLabel

from client_app.facade import SiteOperator
from gui.models import RowsModel
from gui.text import CONTEXT
from gui.window import MainWindow

GUI = Path(__file__).resolve().parents[2] / "gui"

#: Calls whose string arguments name things for the program, never shown as such.
PROGRAM_CALLS = frozenset({
    # Python and the standard library
    "getattr", "hasattr", "setattr", "isinstance", "strftime", "encode", "decode", "join",
    "split", "startswith", "endswith", "replace", "strip", "rstrip", "lstrip", "get",
    "getLogger", "debug", "info", "warning", "error", "exception", "critical", "Path",
    "joinpath", "files", "read_text", "add_argument", "ArgumentParser", "setdefault",
    "TesseraError", "ValueError", "index", "with_suffix", "rjust", "ljust", "count",
    "fromisoformat", "environ",
    # the facade and access rules: action names, permissions, record kinds
    "require", "allowed", "denial", "gate", "start", "act", "run", "set_sharing", "change",
    "decide", "apply_sharing", "load_access_policy",
    # Qt names, keys and styles
    "QKeySequence", "setApplicationName", "setObjectName", "objectName", "setProperty", "property",
    "setStyleSheet", "QColor", "fromString", "findChild", "findChildren", "registerField",
    "field", "setField", "QFont", "QIcon", "fromTheme", "setFamily",
    # matplotlib styling
    "context", "use", "set_aspect", "date2num", "DateFormatter", "Figure", "axis",
    "tick_params", "set_major_formatter", "grid", "rc_context",
})
#: Keyword arguments that are never shown as text.
PROGRAM_KEYWORDS = frozenset({
    "encoding", "where", "marker", "linestyle", "color", "colour", "loc", "fontsize", "ha",
    "va", "layout", "style", "errors", "mode", "kind", "key", "fmt", "drawstyle",
    "which", "axis", "transform", "name", "linewidth", "alpha", "facecolor", "edgecolor",
    "weight", "family", "bbox_inches", "format", "dpi", "scope", "source", "what",
    "decision", "tag", "action", "prog", "level",
})
#: Names bound to program identifiers (a page's key and icon name, the translation context).
PROGRAM_NAMES = frozenset({"key", "icon", "CONTEXT", "POLICY_ENV_VAR", "__all__", "_ALLOWED",
                           "_ACTIONS"})
#: Files that show nothing to an operator: the smoke test's console lines are for CI logs;
#: the theme holds colours, palette role names and theme names only.
NOT_SHOWN = frozenset({"smoke.py", "theme.py"})
_NO_WORDS = re.compile(r"<[^>]*>|\{[^}]*\}|#[0-9a-fA-F]{3,8}\b|[^A-Za-z]")
MARKERS = frozenset({"tr", "noop"})


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _docstrings(tree: ast.Module) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _parents(tree: ast.Module) -> dict[int, ast.AST]:
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    return parents


def _allowed(node: ast.expr, parents: dict[int, ast.AST]) -> bool:
    """Whether the literal ``node`` is marked for translation or never shown."""
    child: ast.AST = node
    parent = parents.get(id(child))
    while parent is not None:
        if isinstance(parent, ast.JoinedStr | ast.FormattedValue):
            child, parent = parent, parents.get(id(parent))  # judge the whole f-string
            continue
        if isinstance(parent, ast.Call):
            name = _name(parent.func)
            if child is parent.func:  # "...".format(...): judge what the result feeds
                child, parent = parent, parents.get(id(parent))
                continue
            if name in MARKERS:
                return isinstance(node, ast.Constant) and child is parent.args[0]
            return name in PROGRAM_CALLS and child in parent.args
        if isinstance(parent, ast.Attribute):  # "...".format, "".join
            child, parent = parent, parents.get(id(parent))
            continue
        if isinstance(parent, ast.keyword):
            return parent.arg in PROGRAM_KEYWORDS
        if isinstance(parent, ast.Assign | ast.AnnAssign):
            targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
            return all(_name(t) in PROGRAM_NAMES for t in targets)
        if isinstance(parent, ast.Compare | ast.Slice):
            return True
        if isinstance(parent, ast.Subscript):  # an index names; an indexed literal may show
            if child is parent.value:
                child, parent = parent, parents.get(id(parent))
                continue
            return True
        if isinstance(parent, ast.Dict):  # keys name; values are judged by where they go
            if any(child is k for k in parent.keys):
                return True
            child, parent = parent, parents.get(id(parent))
            continue
        if isinstance(parent, ast.Tuple | ast.List | ast.Set | ast.Starred | ast.IfExp
                      | ast.BoolOp | ast.BinOp):
            child, parent = parent, parents.get(id(parent))
            continue
        if isinstance(parent, ast.comprehension):
            return True  # iterated names (record kinds, attributes)
        return False
    return False


def _where(path: Path) -> str:
    return str(path.relative_to(GUI.parent)) if path.is_relative_to(GUI.parent) else path.name


def untranslated(path: Path) -> list[str]:
    """``file:line: text`` of each string literal in ``path`` that is shown untranslated."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings, parents = _docstrings(tree), _parents(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(parents.get(id(node)), ast.JoinedStr | ast.FormattedValue):
            continue  # judged as part of its f-string (or a format specification)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in docstrings or not _NO_WORDS.sub("", node.value):
                continue
        elif isinstance(node, ast.JoinedStr):
            literal = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            if not _NO_WORDS.sub("", str(literal)):
                continue
        else:
            continue
        if not _allowed(node, parents):
            text = ast.unparse(node)
            found.append(f"{_where(path)}:{node.lineno}: {text[:70]}")
    return found


def translated_at_import(path: Path) -> list[str]:
    """``file:line`` of each ``tr()`` run when the module or a class body is executed: that
    is before any translator is installed, so the text would never be translated (such a
    constant is marked with ``noop`` and translated with ``tr`` where it is shown)."""
    found = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            # the body runs later; defaults and decorators run with the definition
            run_now: list[ast.AST] = [*node.args.defaults,
                                      *[d for d in node.args.kw_defaults if d is not None]]
            if not isinstance(node, ast.Lambda):
                run_now += node.decorator_list
            for part in run_now:
                visit(part)
            return
        if isinstance(node, ast.Call) and _name(node.func) == "tr":
            found.append(f"{_where(path)}:{node.lineno}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def test_every_user_visible_string_in_the_app_goes_through_tr() -> None:
    problems = [p for path in sorted(GUI.rglob("*.py")) if path.name not in NOT_SHOWN
                for p in untranslated(path)]
    assert problems == [], "strings shown without tr():\n" + "\n".join(problems)
    early = [p for path in sorted(GUI.rglob("*.py")) for p in translated_at_import(path)]
    assert early == [], f"tr() runs at import time: {early}"


def test_the_scan_catches_a_label_a_message_and_an_f_string(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""A module."""\n'
        'from gui.text import tr\n'
        'a = QLabel("Hello")\n'
        'b = QLabel(tr("Hello"))\n'
        'c = QLabel(tr(f"Hello {x}"))\n'
        'd = QLabel(tr("Hello {x}").format(x=x))\n'
        'e = self.show_error(f"failed: {m}")\n'
        'f = {"key": "shown value"}["key"]\n'
        'g = operator.require("gui audit.verify")\n'
        'if kind == "approved":\n    pass\n'
        'h = {"approved": "Shown when approved"}[kind]\n'
        'ALL = tr("All")\n'
        'def show(title: str = tr("Tessera")) -> None:\n    QLabel(tr("Later"))\n',
        encoding="utf-8")
    lines = sorted(int(p.split(":")[1]) for p in untranslated(sample))
    assert lines == [3, 5, 7, 8, 12]
    assert translated_at_import(sample) == ["sample.py:4", "sample.py:5", "sample.py:6",
                                            "sample.py:13", "sample.py:14"]


@pytest.fixture
def pseudo_translation(qtbot) -> object:
    """A translator that brackets every string of the app's context."""

    class Brackets(QTranslator):
        def translate(self, context: str, source: str, disambiguation: str | None = None,
                      n: int = -1) -> str:
            return f"[{source}]" if context == CONTEXT else ""

        def isEmpty(self) -> bool:
            return False

    translator = Brackets()
    QCoreApplication.installTranslator(translator)
    yield translator
    QCoreApplication.removeTranslator(translator)


def test_a_translation_reaches_the_rendered_window(
    qtbot, pseudo_translation: object, operator: SiteOperator,
) -> None:
    """Navigation, headings, buttons and column headers all come out of the translator."""
    window = MainWindow(operator)
    qtbot.addWidget(window)
    items = [window.sidebar.item(i).text() for i in range(window.sidebar.count())]
    assert items and all(_bracketed(t) for t in items), items
    for page in window.pages:
        headings = [label.text() for label in page.findChildren(QLabel)
                    if label.font().bold() and label.text()]
        buttons = [b.text() for b in page.findChildren(QAbstractButton) if b.text()]
        headers = [m.headerData(c, Qt.Orientation.Horizontal)
                   for m in page.findChildren(RowsModel) for c in range(m.columnCount())]
        shown = [t for t in headings + buttons + headers if t and _NO_WORDS.sub("", t)]
        assert shown and all(_bracketed(t) for t in shown), (page.title, shown)
    window.close()


def _bracketed(text: str) -> bool:
    return text.startswith("[") and text.endswith("]")
