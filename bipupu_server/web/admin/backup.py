"""Admin pages: the backup — a consistent hot copy of the database, made in the executor and streamed as a file."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from ... import keys
from ...store.backup import BackupError, backup_database
from . import i18n
from .guard import PageRefused, actor, confirm, elevated, read_form, render

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024  # read in the executor this much at a time: memory stays flat whatever the database's size
CONTENT_TYPE = "application/vnd.sqlite3"


async def backup_page(request: web.Request) -> web.Response:
    config = request.config_dict[keys.config]
    size = await asyncio.get_running_loop().run_in_executor(None, _database_bytes, config.db_path)
    return render(request, "backup.html", db_bytes=size, data_dir=str(config.data_dir))


async def download(request: web.Request) -> web.StreamResponse:
    form = await read_form(request)
    if not await elevated(request, form):  # a copy of every password hash and card: dangerous
        return confirm(request, form, failed=bool(form.get("confirm_password")))
    app = request.config_dict
    config, loop = app[keys.config], asyncio.get_running_loop()
    made = loop.run_in_executor(None, make_copy, config.db_path, config.data_dir)
    try:
        copy, size = await asyncio.shield(made)
    except asyncio.CancelledError:
        made.add_done_callback(_close_when_made)  # the copy still arrives: close it then
        raise
    except BackupError as exc:
        log.warning("backup from the admin page failed: %s", exc)
        raise PageRefused(503, i18n.gettext("The backup could not be made: %(reason)s") % {"reason": exc}) from None
    try:
        await app[keys.admin].record(actor(request), "backup.download", None, bytes=size)
        made_at = datetime.fromtimestamp(app[keys.clock].time(), app[keys.zone])
    except BaseException:
        copy.close()
        raise
    return BackupDownload(copy, size, f"bipupu-{made_at:%Y%m%d-%H%M%S}.db")


def make_copy(source: Path, data_dir: Path) -> tuple[BinaryIO, int]:
    """The copy, made in a private folder under the data dir, open for reading and already unlinked (blocking).

    Nothing is left on disk however the sending ends: the space is freed when the file is closed.
    """
    try:
        folder = Path(tempfile.mkdtemp(prefix=".backup-", dir=data_dir))  # 0700: the copy holds password hashes
    except OSError as exc:
        raise BackupError(f"cannot write in {data_dir}: {exc.strerror or exc}") from None
    try:
        target = folder / "bipupu.db"  # distinct folders: concurrent downloads never share a file
        size = backup_database(source, target)
        copy = open(target, "rb")  # noqa: SIM115  (handed to the response, which closes it)
    except OSError as exc:
        raise BackupError(f"cannot read the copy back: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return copy, size


class BackupDownload(web.StreamResponse):
    """The copy as an attachment, sent when aiohttp prepares it (after the page middleware set its headers)."""

    def __init__(self, copy: BinaryIO, size: int, filename: str):
        super().__init__(headers={"Content-Type": CONTENT_TYPE,
                                  "Content-Disposition": f'attachment; filename="{filename}"'})
        self.content_length = size
        self._copy = copy

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        loop = asyncio.get_running_loop()
        try:
            writer = await super().prepare(request)
            assert writer is not None
            while chunk := await loop.run_in_executor(None, self._copy.read, CHUNK_BYTES):
                await writer.write(chunk)
            return writer
        finally:  # sent, client gone or failed: closing frees the space (freeing blocks may be slow: executor)
            await loop.run_in_executor(None, self._copy.close)


def _close_when_made(made: asyncio.Future) -> None:
    if not made.cancelled() and made.exception() is None:
        made.result()[0].close()


def _database_bytes(path: Path) -> int:
    """The database file and its write-ahead log, as the dashboard counts them."""
    total = 0
    for name in (path, path.with_name(path.name + "-wal")):
        try:
            total += os.stat(name).st_size
        except FileNotFoundError:
            pass
    return total


ROUTES = [
    ("GET", "/backup", backup_page, "admin.backup"),
    ("POST", "/backup", download, "admin.backup_download"),
]
