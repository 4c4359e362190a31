"""Error codes and the one exception type of Tessera.

Internal code raises :class:`TesseraError` with a code and a message that names the
parameter or field at fault. Only the three boundaries (CLI, gRPC, GUI) turn codes into
exit statuses or on-screen text. Messages never carry patient data or key material.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Machine-readable failure and refusal codes."""

    PLAN_INVALID = "plan_invalid"
    CONFIG_INVALID = "config_invalid"
    UNKNOWN_STUDY = "unknown_study"
    NOT_APPROVED = "not_approved"
    BUDGET_EXCEEDED = "budget_exceeded"
    DATA_INVALID = "data_invalid"
    BAD_ENVELOPE = "bad_envelope"
    BAD_CIPHERTEXT = "bad_ciphertext"
    FOREIGN_STUDY = "foreign_study"
    WRONG_ROUND = "wrong_round"
    REPLAY = "replay"
    DUPLICATE = "duplicate"
    OVERSIZED = "oversized"
    BAD_SIGNATURE = "bad_signature"
    FINGERPRINT_MISMATCH = "fingerprint_mismatch"
    KEY_MISSING = "key_missing"
    WRONG_PASSPHRASE = "wrong_passphrase"  # noqa: S105 (an error code)
    NOT_FOUND = "not_found"
    PERMISSION_DENIED = "permission_denied"
    PROCESS_FAILED = "process_failed"
    CANCELLED = "cancelled"
    INTERNAL = "internal"
    # protocol refusals and coordinator-side outcomes
    OUT_OF_SCHEDULE = "out_of_schedule"
    NOT_CACHED = "not_cached"
    NO_REPLY = "no_reply"
    TOO_FEW_SITES = "too_few_sites"
    OPEN_REFUSED = "open_refused"


#: Exit statuses used by the CLI boundary. 0 is success; 1 is reserved for crashes.
EXIT_CODES: dict[ErrorCode, int] = {
    ErrorCode.PLAN_INVALID: 2,
    ErrorCode.CONFIG_INVALID: 2,
    ErrorCode.DATA_INVALID: 3,
    ErrorCode.UNKNOWN_STUDY: 4,
    ErrorCode.NOT_FOUND: 4,
    ErrorCode.NOT_APPROVED: 5,
    ErrorCode.BUDGET_EXCEEDED: 6,
    ErrorCode.BAD_ENVELOPE: 7,
    ErrorCode.BAD_CIPHERTEXT: 7,
    ErrorCode.FOREIGN_STUDY: 7,
    ErrorCode.WRONG_ROUND: 7,
    ErrorCode.REPLAY: 7,
    ErrorCode.DUPLICATE: 7,
    ErrorCode.OVERSIZED: 7,
    ErrorCode.BAD_SIGNATURE: 7,
    ErrorCode.FINGERPRINT_MISMATCH: 7,
    ErrorCode.KEY_MISSING: 8,
    ErrorCode.WRONG_PASSPHRASE: 9,
    ErrorCode.PERMISSION_DENIED: 10,
    ErrorCode.PROCESS_FAILED: 11,
    ErrorCode.INTERNAL: 12,
    ErrorCode.CANCELLED: 13,
    ErrorCode.OUT_OF_SCHEDULE: 7,
    ErrorCode.NOT_CACHED: 7,
    ErrorCode.NO_REPLY: 11,
    ErrorCode.TOO_FEW_SITES: 11,
    ErrorCode.OPEN_REFUSED: 11,
}


def exit_status(code: ErrorCode) -> int:
    """The CLI exit status for an error code."""
    return EXIT_CODES.get(code, 1)


class TesseraError(Exception):
    """A failure with a machine-readable code and a human-readable message."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message

    @property
    def exit_code(self) -> int:
        """The CLI exit status for this error."""
        return exit_status(self.code)


def describe(exc: BaseException) -> tuple[int, str] | None:
    """The exit status and one-line message for an error at a boundary; None if it is a bug.

    Tessera errors keep their code's status and message. Operating-system errors name what is
    wrong and the path ("is a directory: PATH", "no such file or directory: PATH"), never file
    contents. Database errors (the driver refused: cannot open, locked, not a database) name
    only their type, never the statement or its parameters. Anything else is a bug and must
    surface as one.
    """
    if isinstance(exc, TesseraError):
        return exc.exit_code, exc.message
    if isinstance(exc, OSError):
        return exit_status(ErrorCode.INTERNAL), _os_error_text(exc)
    if _is_database_error(exc):
        return (exit_status(ErrorCode.INTERNAL),
                f"the database cannot be used ({type(exc).__name__})")
    return None


def _os_error_text(exc: OSError) -> str:
    """``what: PATH[ -> PATH2]``; the type's name when the system gave no description.

    Only ``strerror`` and the file names are used: some ``OSError`` subclasses (a bad gzip
    archive, for one) put bytes of the file into their message.
    """
    what = exc.strerror.lower() if exc.strerror else type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None and p != ""]
    return f"{what}: {' -> '.join(paths)}" if paths else what


#: Database failures that are the environment's, not the code's: SQLAlchemy's wrapper of every
#: driver error, its connection-pool timeout, and the SQLite driver's own errors.
_DATABASE_ERRORS = frozenset({
    ("sqlalchemy.exc", "DBAPIError"),
    ("sqlalchemy.exc", "TimeoutError"),
    ("sqlite3", "Error"),
})


def _is_database_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a database failure (checked by class, without importing drivers)."""
    return any((cls.__module__, cls.__name__) in _DATABASE_ERRORS for cls in type(exc).__mro__)
