"""The processing tier: a scratch folder per job, under /tmp by default, emptied after the job.

Each worker process owns `<processing>/<host>.<pid>/`; a folder left by a dead
worker on this host is removed when the next one starts, so the ephemeral disk
never fills with leftovers.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from processor.errors import TransientError
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

    def create(self, job_id: str) -> Path:
        """A fresh folder for one job; the caller removes it with `remove` whatever happens."""
        self.mine.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=self.mine, prefix=f"{job_id[:40]}."))

    @staticmethod
    def remove(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def ensure_free(self, needed_bytes: int) -> None:
        """Refuse to start a download the disk cannot hold; another pod (or later) may do better."""
        free = shutil.disk_usage(self.root).free
        if free < needed_bytes:
            raise TransientError(
                f"processing folder {self.root} has {free} bytes free; a job needs {needed_bytes}",
                code="processing_disk_full",
            )
