"""The processing tier: a scratch folder per job, under /tmp by default, emptied after the job.

Each worker process owns `<processing>/<host>.<pid>/`; a folder left by a dead
worker on this host is removed when the next one starts, so the ephemeral disk
never fills with leftovers.
"""

from __future__ import annotations

import errno
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from processor.errors import ProcessingDiskFull
from processor.storage.local import pid_alive, worker_identity


@dataclass
class WorkDir:
    root: Path
    identity: str = field(default_factory=worker_identity)

    @property
    def mine(self) -> Path:
        return self.root / self.identity

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        host = socket.gethostname()
        for folder in self.root.iterdir():
            owner_host, _, pid = folder.name.rpartition(".")
            if folder.is_dir() and owner_host == host and pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)
        self.mine.mkdir(exist_ok=True)

    @contextmanager
    def scratch(self, job_id: str, needed_bytes: int) -> Iterator[Path]:
        """A fresh folder for one job, removed when the block ends, whatever happens in it.

        The disk filling up inside the block (the voice's copy or download, decoding, temp files) is
        `processing_disk_full`: transient, like too little free space before it.
        """
        self.ensure_free(needed_bytes)
        with self._filling_up():
            self.mine.mkdir(parents=True, exist_ok=True)
            path = Path(tempfile.mkdtemp(dir=self.mine, prefix=f"{job_id[:40]}."))
            try:
                yield path
            finally:
                shutil.rmtree(path, ignore_errors=True)

    @contextmanager
    def _filling_up(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            if not disk_full(exc):
                raise
            raise ProcessingDiskFull(f"processing folder {self.root} filled up: {exc.strerror}") from exc

    def ensure_free(self, needed_bytes: int) -> None:
        """Refuse to start a download the disk cannot hold; another pod (or later) may do better."""
        free = shutil.disk_usage(self.root).free
        if free < needed_bytes:
            raise ProcessingDiskFull(
                f"processing folder {self.root} has {free} bytes free; a job needs {needed_bytes}"
            )


def disk_full(exc: BaseException) -> bool:
    """No space left, or over a quota: a write that may succeed once space is freed."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
