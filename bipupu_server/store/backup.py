"""Hot backups with SQLite's online backup API (safe while the server writes)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from .db import connect

# One step: a stepped backup restarts whenever the server's writer commits between steps, so on a busy
# box it may never finish; under WAL the single step's read snapshot does not hold the writer up.
PAGES_PER_STEP = -1


class BackupError(Exception):
    """The backup could not be made; the message is one line for the operator."""


def backup_database(source: Path, target: Path) -> int:
    """Copy the live database at `source` into `target` consistently; returns the bytes written.

    Blocking: call it from an executor inside the server.
    """
    if not source.is_file():
        raise BackupError(f"no database at {source}")
    target = target.expanduser().resolve()
    if target == source.resolve():
        raise BackupError("the backup file cannot be the database itself")
    if target.is_dir():
        raise BackupError(f"{target} is a directory; give a file name")
    partial = target.with_name(f".{target.name}.partial")
    try:
        partial.unlink(missing_ok=True)
        os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # password hashes: owner only
        src = connect(source, read_only=True)
        try:
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst, pages=PAGES_PER_STEP)
                dst.execute("PRAGMA journal_mode = DELETE")
                verdict = dst.execute("PRAGMA integrity_check").fetchone()[0]
                if verdict != "ok":
                    raise BackupError(f"the copy failed its integrity check: {verdict}")
            finally:
                dst.close()
        finally:
            src.close()
        with open(partial, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(partial, target)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"backup failed: {exc}") from None
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"cannot write {target}: {exc.strerror or exc}") from None
    except BackupError:
        partial.unlink(missing_ok=True)
        raise
    return target.stat().st_size
