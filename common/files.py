"""Private files on disk: the one atomic, durable write and the empty private file.

Every file Tessera rewrites in place (keystores, encrypted blobs, site.toml, model files,
run results, predictions, pid files) goes through :func:`atomic_write_bytes`: the bytes go
to a temporary file in the same folder, created with mode 0600 (or the mode asked for),
flushed and fsync'd, then renamed over the target, and the folder itself is fsync'd so the
rename survives a crash. A reader sees the old content or the new, never a mixture, and a
failed write leaves the old file and no temporary file behind. Append-only logs are not
rewrites and keep their own appends.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from common.errors import ErrorCode, TesseraError

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def fsync_dir(folder: Path) -> None:
    """Make the entries of ``folder`` (a rename, a new file) durable; no-op off POSIX."""
    if os.name != "posix":
        return
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path: Path, data: bytes, *, overwrite: bool = True,
                       mode: int = PRIVATE_FILE) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync, rename.

    The file gets ``mode`` (0600 unless asked otherwise) before it is visible under its
    name. With ``overwrite=False`` the temporary file is hard-linked instead of renamed, so
    an existing file is never replaced (DUPLICATE). On any failure the temporary file is
    removed and the old file, if any, is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:  # mkstemp creates it 0600
            if mode != PRIVATE_FILE:
                os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise TesseraError(ErrorCode.DUPLICATE,
                                   f"{path.name} already exists; refusing to overwrite") from None
            tmp.unlink()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def ensure_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist yet (an existing file is
    left as it is), so that a file another library fills (SQLite) is never world-readable."""
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE))
