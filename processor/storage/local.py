"""Local folders as inbox, outbox and voice source: the embedded default.

A manifest is claimed by renaming it into `<inbox>/.claims/`, which is atomic on
one filesystem: of several workers renaming the same file, exactly one wins.
The claim's name records its owner (`<name>@<host>.<pid>.json`), so a restarted
worker can return claims whose owner died. Finished manifests move to
`<inbox>/.done/`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from processor.errors import OutboxUnwritable, VoiceNotAllowed, VoiceNotFound, VoiceTooLarge, VoiceUnreadable

if TYPE_CHECKING:
    from processor.aws import Clients
    from processor.settings import Settings
    from processor.storage.workdir import WorkDir

CLAIMS = ".claims"
DONE = ".done"


def worker_identity() -> str:
    return f"{socket.gethostname()}.{os.getpid()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write(path: Path, data: bytes) -> Path:
    """Write a sibling temp file, fsync it and return it, ready to be renamed or linked into place.

    A write that fails (a full disk, a quota) removes its temp file: no `.part` is left behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Around a write into the outbox folder: the OS refusing it is the worker's own trouble, not the job's."""
    try:
        yield
    except OSError as exc:
        raise OutboxUnwritable(f"cannot write {path}: {exc.strerror or exc}") from exc


@dataclass
class LocalLease:
    inbox: LocalInbox
    claim: Path
    name: str
    _body: bytes | None = None
    delivery: int = 1
    redelivers: bool = False  # a folder has no redelivery: the worker tries again itself
    final_attempt: bool = True

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = self.claim.read_bytes()
        return self._body

    def ack(self) -> None:
        done = self.inbox.root / DONE
        done.mkdir(exist_ok=True)
        target = done / f"{self.name}.json"
        if target.exists():
            target = done / f"{self.name}.{time.time_ns()}.json"
        os.replace(self.claim, target)

    def release(self) -> None:
        os.replace(self.claim, self.inbox.root / f"{self.name}.json")

    def retry_later(self) -> None:
        self.release()

    def extend(self) -> None:
        os.utime(self.claim)


@dataclass
class LocalInbox:
    root: Path
    stale_after_s: float
    identity: str = field(default_factory=worker_identity)
    settle_s: float = 0.2  # a file younger than this may still be being written by a non-atomic copy
    poll_s: float = 1.0

    @classmethod
    def open(cls, url: str, settings: Settings, clients: Clients, workdir: WorkDir) -> LocalInbox:
        return cls(Path(url), stale_after_s=settings.claim_stale_s, identity=workdir.identity)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / CLAIMS).mkdir(exist_ok=True)

    def claim(self, *, once: bool, stop: threading.Event) -> list[LocalLease]:
        self.recover()
        while not stop.is_set():
            waiting = self._pending()
            for path in waiting:
                if self._settled(path) and (lease := self.take(path)) is not None:
                    return [lease]
            if not waiting:
                if once:
                    return []
                self._wait_for_manifests(stop)
            elif not any(self._settled(p) for p in self._pending()):
                time.sleep(self.settle_s)
        return []

    def take(self, path: Path) -> LocalLease | None:
        name = path.name.removesuffix(".json")
        claim = self.root / CLAIMS / f"{name}@{self.identity}.json"
        try:
            os.rename(path, claim)
        except FileNotFoundError:
            return None  # another worker was faster
        return LocalLease(self, claim, name)

    def recover(self) -> list[str]:
        """Return to the inbox the claims of workers that died; names of what was returned."""
        returned = []
        host = socket.gethostname()
        for claim in sorted((self.root / CLAIMS).glob("*.json")):
            name, _, owner = claim.name.removesuffix(".json").rpartition("@")
            owner_host, _, pid = owner.rpartition(".")
            if owner == self.identity:
                continue
            if owner_host == host and pid.isdigit():
                dead = not pid_alive(int(pid))
            else:
                dead = time.time() - claim.stat().st_mtime > self.stale_after_s
            if dead:
                with contextlib.suppress(FileNotFoundError):
                    os.rename(claim, self.root / f"{name}.json")
                    returned.append(name)
        return returned

    def _pending(self) -> list[Path]:
        return sorted(p for p in self.root.glob("*.json") if not p.name.startswith("."))

    def _settled(self, path: Path) -> bool:
        """Skip files still being written by a non-atomic copy."""
        try:
            return time.time() - path.stat().st_mtime >= self.settle_s
        except FileNotFoundError:
            return False

    def _wait_for_manifests(self, stop: threading.Event) -> None:
        from watchfiles import watch

        # raise_interrupt=False: a stop signal ends the watch; the worker's own handler decides what follows.
        for _ in watch(self.root, recursive=False, rust_timeout=int(self.poll_s * 1000), yield_on_timeout=True,
                       stop_event=stop, raise_interrupt=False):
            return


@dataclass
class LocalOutbox:
    root: Path

    @classmethod
    def open(cls, url: str, settings: Settings, clients: Clients, workdir: WorkDir) -> LocalOutbox:
        return cls(Path(url))

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        with _writing(path):
            tmp = atomic_write(path, data)
            try:
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        with _writing(path):
            tmp = atomic_write(path, data)
            try:
                os.link(tmp, path)  # link fails if the target exists: no overwrite, no window
            except FileExistsError:
                return False
            finally:
                tmp.unlink()
        return True

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def uri(self, key: str) -> str:
        return str(self._path(key).resolve())


@dataclass
class LocalVoices:
    """Voice clips under the inbox folder, addressed by relative path, up to `max_bytes` each."""

    root: Path
    max_bytes: int

    @classmethod
    def open(cls, url: str, settings: Settings, clients: Clients, workdir: WorkDir) -> LocalVoices:
        return cls(Path(url), max_bytes=settings.voice_max_bytes)

    def identity(self, ref: str) -> str:
        path = self.resolve(ref)
        try:
            st = path.stat()
        except OSError as exc:
            raise VoiceNotFound(f"voice {ref!r} not found: expected a file at {str(path)!r}") from exc
        return f"file://{path.resolve()}#{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"

    def fetch(self, ref: str, dest_dir: Path, identity: str | None = None) -> Path:
        # `identity` is not checked: a local clip replaced in the instant between stat and copy is the user's own doing.
        path = self.resolve(ref)
        if not path.is_file():
            raise VoiceNotFound(f"voice {ref!r} not found: expected a file at {str(path)!r}")
        size = path.stat().st_size
        if size > self.max_bytes:
            raise VoiceTooLarge(f"voice {ref!r} is {size} bytes; the limit is {self.max_bytes} (F5B_VOICE_MAX_BYTES)")
        if size == 0:
            raise VoiceUnreadable(f"voice {ref!r} is an empty file (0 bytes); upload the clip again")
        dest = dest_dir / f"voice{''.join(path.suffixes[-1:])}"
        self._copy(ref, path, dest)
        return dest

    def _copy(self, ref: str, src: Path, dest: Path) -> None:
        """Copy, then check the copy: a file that grew past the limit after the size check is still refused."""
        shutil.copyfile(src, dest)
        if dest.stat().st_size > self.max_bytes:
            dest.unlink()
            raise VoiceTooLarge(f"voice {ref!r} grew past the limit of {self.max_bytes} bytes while being read")

    def resolve(self, ref: str) -> Path:
        return voice_path(self.root, ref)


def voice_path(root: Path, ref: str) -> Path:
    """Where a manifest's `voice` is in an inbox folder: a relative path inside it, nothing else."""
    if "://" in ref:
        raise VoiceNotAllowed(
            f"voice {ref!r} is a URL; with a local inbox, voice is a path relative to the inbox folder"
        )
    rel = PurePosixPath(ref)
    if rel.is_absolute() or ".." in rel.parts or "\\" in ref:
        raise VoiceNotAllowed(
            f"voice {ref!r} must be a relative path inside the inbox folder (no '..', no absolute paths)"
        )
    return root / rel
