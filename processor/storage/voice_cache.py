"""Downloaded voice clips kept in the processing tier, keyed by bucket, key and ETag, capped in bytes.

The ETag is in the key, so a changed object is never served stale. The least
recently used clips are evicted when the cap is passed. This is the one thing in
the processing folder that outlives a job, and its size is bounded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class VoiceCache:
    root: Path
    max_bytes: int
    _entries: OrderedDict[str, int] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)  # entries of an earlier process are unknown: start clean
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _name(bucket: str, key: str, etag: str) -> str:
        return hashlib.sha256(f"{bucket}\0{key}\0{etag}".encode()).hexdigest()

    def copy_to(self, bucket: str, key: str, etag: str, dest: Path) -> bool:
        name = self._name(bucket, key, etag)
        with self._lock:
            if name not in self._entries:
                return False
            self._entries.move_to_end(name)
            shutil.copyfile(self.root / name, dest)
        return True

    def add(self, bucket: str, key: str, etag: str, source: Path) -> None:
        size = source.stat().st_size
        if size > self.max_bytes:
            return
        name = self._name(bucket, key, etag)
        tmp = self.root / f".{name}.part"
        try:
            shutil.copyfile(source, tmp)
        except OSError:  # a full disk: the cache outlives the job, so nothing half-copied may stay in it
            tmp.unlink(missing_ok=True)
            raise
        with self._lock:
            os.replace(tmp, self.root / name)
            self._entries[name] = size
            self._entries.move_to_end(name)
            while sum(self._entries.values()) > self.max_bytes:
                evicted, _ = self._entries.popitem(last=False)
                (self.root / evicted).unlink(missing_ok=True)
