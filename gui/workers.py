"""Background work: a QRunnable per task, its signals, and a per-page runner with cancel.

Anything slow (parsing a data file, evaluating a model, verifying the audit log) runs in
the global thread pool so that the window never freezes. A task is a function of its
:class:`Worker`, which it may tell its progress (0..1) and ask whether the operator
cancelled. Results and errors come back to the GUI thread as signals; a page's
:class:`TaskRunner` relays them after its own handler ran, which is what tests wait on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from common.errors import ErrorCode, TesseraError
from gui.dialogs import error_text


class WorkerSignals(QObject):
    """What a worker reports: progress(fraction), finished(result), failed(code, message)."""

    progress = Signal(float)
    finished = Signal(object)
    failed = Signal(str, str)


class Worker(QRunnable):
    """Runs ``task(worker)`` off the GUI thread and reports through :attr:`signals`."""

    def __init__(self, task: Callable[[Worker], object]) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the runner keeps it until its signals are delivered
        self.signals = WorkerSignals()
        self._task = task
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Ask the task to stop at its next check."""
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def report(self, fraction: float) -> None:
        """Tell the GUI how far the task is (0..1)."""
        self.signals.progress.emit(max(0.0, min(1.0, float(fraction))))

    def run(self) -> None:
        try:
            result = self._task(self)
        except TesseraError as err:
            self.signals.failed.emit(err.code.value, err.message)
        except Exception as exc:  # the GUI boundary: a message, never a traceback
            self.signals.failed.emit(ErrorCode.INTERNAL.value, error_text(exc))
        else:
            self.signals.finished.emit(result)


@dataclass(frozen=True)
class _Running:
    name: str
    worker: Worker
    on_done: Callable[[Any], None]
    on_error: Callable[[str, str], None]


class TaskRunner(QObject):
    """One page's background tasks: start, cancel, and relay results to the GUI thread.

    ``done(name, result)`` is emitted after the task's ``on_done`` handler ran,
    ``failed(name, message)`` after ``on_error(code, message)`` ran (a cancelled task fails
    with code ``cancelled``). ``busy_changed`` drives the page's progress bar and buttons.
    """

    done = Signal(str, object)
    failed = Signal(str, str)
    progress = Signal(float)
    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None,
                 pool: QThreadPool | None = None) -> None:
        super().__init__(parent)
        self._pool = pool or QThreadPool.globalInstance()
        self._current: _Running | None = None

    @property
    def busy(self) -> bool:
        return self._current is not None

    @property
    def running(self) -> str | None:
        """The name of the task in flight, if any."""
        return self._current.name if self._current else None

    def start(self, name: str, task: Callable[[Worker], object], *,
              on_done: Callable[[Any], None],
              on_error: Callable[[str, str], None]) -> Worker:
        """Run ``task`` in the pool (one task per page at a time)."""
        if self._current is not None:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"'{self._current.name}' is still running; wait or cancel it")
        worker = Worker(task)
        # Bound slots of this GUI-thread object: Qt queues the worker thread's emissions.
        worker.signals.progress.connect(self.progress)
        worker.signals.finished.connect(self._finish)
        worker.signals.failed.connect(self._fail)
        self._current = _Running(name, worker, on_done, on_error)
        self.busy_changed.emit(True)
        self._pool.start(worker)
        return worker

    @Slot()
    def cancel(self) -> None:
        if self._current is not None:
            self._current.worker.cancel()

    def _release(self) -> _Running:
        running = self._current
        assert running is not None
        self._current = None
        self.busy_changed.emit(False)
        return running

    @Slot(object)
    def _finish(self, result: object) -> None:
        running = self._release()
        try:
            running.on_done(result)
        except TesseraError as err:
            running.on_error(err.code.value, err.message)
            self.failed.emit(running.name, err.message)
            return
        self.done.emit(running.name, result)

    @Slot(str, str)
    def _fail(self, code: str, message: str) -> None:
        running = self._release()
        running.on_error(code, message)
        self.failed.emit(running.name, message)
