"""Local folders as inbox, outbox and voice source: the embedded default.

A manifest is claimed by renaming it into `<inbox>/.claims/`, which is atomic on
one filesystem: of several workers renaming the same file, exactly one wins.
The claim's name records its owner (`<name>@<host>.<pid>.json`), so a restarted
worker can return claims whose owner died. Finished manifests move to
`<inbox>/.done/`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import socket
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO

from processor.errors import (
    F5BatchError,
    OutboxUnwritable,
    StorageError,
    VoiceNotAllowed,
    VoiceNotFound,
    VoiceTooLarge,
    VoiceUnreadable,
)

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


_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NO_LINK = os.O_NOFOLLOW | os.O_CLOEXEC


def open_folder(parent: int, name: str, *, create: bool = False) -> int:
    """The folder `name` in the open folder `parent`, made first if `create`; a link there fails (ENOTDIR)."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, dir_fd=parent)
    return os.open(name, _FOLDER | os.O_NOFOLLOW, dir_fd=parent)


def open_below(root: Path, parts: Sequence[str], *, create: bool = False) -> int:
    """The folder `root/parts…`, open, reached without following a link below `root` (root itself may be one).

    Each step opens the next folder relative to the last one: a folder swapped for a link after a check is
    refused here (NotADirectoryError), not followed, as a check of the path and then a use of it would.
    """
    fd = os.open(root, _FOLDER)
    try:
        for part in parts:
            inner = open_folder(fd, part, create=create)
            os.close(fd)
            fd = inner
    except OSError as exc:
        os.close(fd)
        if exc.errno == errno.ELOOP:  # what some systems say for O_DIRECTORY | O_NOFOLLOW on a link
            raise NotADirectoryError(exc.errno, exc.strerror, exc.filename) from exc
        raise
    return fd


def atomic_write(folder: int, name: str, data: bytes) -> str:
    """Write a sibling temp file of `name` in the open `folder`, fsync it and return its name, ready to be renamed
    or linked into place. A fresh name, created exclusively: never an existing file or a link.

    A write that fails (a full disk, a quota) removes its temp file: no `.part` is left behind.
    """
    tmp = f".{name}.{secrets.token_hex(8)}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_LINK, 0o600, dir_fd=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp, dir_fd=folder)
        raise
    return tmp


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
    """Job folders under `root`. The root may be a link (where a user mounted the outbox); below it nothing is
    written or read through a link: a linked job folder or result file is a `storage_error` of that job."""

    root: Path

    @classmethod
    def open(cls, url: str, settings: Settings, clients: Clients, workdir: WorkDir) -> LocalOutbox:
        return cls(Path(url))

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / key

    @contextlib.contextmanager
    def _folder(self, key: str, *, create: bool = False) -> Iterator[tuple[int, str]]:
        """The open folder of `key` and the file's name in it."""
        *folders, name = PurePosixPath(key).parts
        try:
            folder = open_below(self.root, folders, create=create)
        except NotADirectoryError as exc:
            raise StorageError(f"{str(self._path(key).parent)!r} is a symbolic link or not a folder: the outbox "
                               f"writes nothing through it; remove it") from exc
        try:
            yield folder, name
        finally:
            os.close(folder)

    def _entry(self, folder: int, name: str, key: str) -> os.stat_result | None:
        """What is at `name` in `folder`, not followed; None if nothing is. A link there is refused."""
        try:
            found = os.stat(name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(found.st_mode):
            raise StorageError(f"{str(self._path(key))!r} is a symbolic link: the outbox writes nothing through it; "
                               f"remove it")
        return found

    def put(self, key: str, data: bytes) -> None:
        with _writing(self._path(key)), self._folder(key, create=True) as (folder, name):
            self._entry(folder, name, key)
            tmp = atomic_write(folder, name, data)
            try:
                # A rename replaces what is at `name` (a link made since the check too), never what a link points to.
                os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
            except BaseException:
                os.unlink(tmp, dir_fd=folder)
                raise

    def put_if_absent(self, key: str, data: bytes) -> bool:
        with _writing(self._path(key)), self._folder(key, create=True) as (folder, name):
            self._entry(folder, name, key)
            tmp = atomic_write(folder, name, data)
            try:
                os.link(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)  # fails if anything, a link too, is there
            except FileExistsError:
                self._entry(folder, name, key)
                return False
            finally:
                os.unlink(tmp, dir_fd=folder)
        return True

    def exists(self, key: str) -> bool:
        try:
            with self._folder(key) as (folder, name):
                found = self._entry(folder, name, key)
        except FileNotFoundError:
            return False
        return found is not None and stat.S_ISREG(found.st_mode)

    def get(self, key: str) -> bytes:
        with self._folder(key) as (folder, name):
            self._entry(folder, name, key)
            with os.fdopen(os.open(name, os.O_RDONLY | _NO_LINK, dir_fd=folder), "rb") as f:
                return f.read()

    def uri(self, key: str) -> str:
        return str(self.root.resolve() / key)


@dataclass
class LocalVoices:
    """Voice clips under the inbox folder, addressed by relative path, up to `max_bytes` each.

    Links are followed only where they stay inside the inbox (its own root may be a link): the clip's real path
    must be below the inbox's. The copy reads from one descriptor, opened without following a link on the way,
    so a folder or file swapped for a link between the check and the copy cannot lead out either.
    """

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
        return f"file://{path}#{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"

    def fetch(self, ref: str, dest_dir: Path, identity: str | None = None) -> Path:
        # `identity` is not checked: a local clip replaced in the instant between stat and copy is the user's own doing.
        with self._open(ref) as src:
            dest = dest_dir / f"voice{PurePosixPath(ref).suffix}"
            self._copy(ref, src, dest)
        return dest

    def _open(self, ref: str) -> BinaryIO:
        """The clip, open for reading, once it is known to be a regular file of an allowed size."""
        fd = self._descriptor(ref)
        try:
            self._check_file(ref, os.fstat(fd))
        except F5BatchError:
            os.close(fd)
            raise
        return os.fdopen(fd, "rb")

    def _descriptor(self, ref: str) -> int:
        """O_NONBLOCK: opening a FIFO must not wait for a writer (the fstat after it refuses one)."""
        root, inside = self._located(ref)
        *folders, name = inside.parts or (".",)
        try:
            folder = open_below(root, folders)
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | _NO_LINK, dir_fd=folder)
            finally:
                os.close(folder)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise VoiceNotFound(f"voice {ref!r} not found: expected a file at {str(root / inside)!r}") from exc
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise VoiceNotAllowed(f"voice {ref!r} became a symbolic link while being read") from exc
        return fd

    def _check_file(self, ref: str, found: os.stat_result) -> None:
        if not stat.S_ISREG(found.st_mode):
            kind = "a folder" if stat.S_ISDIR(found.st_mode) else "a FIFO, socket or device"
            raise VoiceNotFound(f"voice {ref!r} not found: expected a file, found {kind}")
        if found.st_size > self.max_bytes:
            raise VoiceTooLarge(
                f"voice {ref!r} is {found.st_size} bytes; the limit is {self.max_bytes} (F5B_VOICE_MAX_BYTES)")
        if found.st_size == 0:
            raise VoiceUnreadable(f"voice {ref!r} is an empty file (0 bytes); upload the clip again")

    def _copy(self, ref: str, src: BinaryIO, dest: Path) -> None:
        """At most max_bytes + 1 bytes: a file that grew past the limit after the size check is still refused."""
        copied = 0
        with dest.open("wb") as out:
            while chunk := src.read(min(1 << 20, self.max_bytes + 1 - copied)):
                out.write(chunk)
                copied += len(chunk)
        if copied > self.max_bytes:
            dest.unlink()
            raise VoiceTooLarge(f"voice {ref!r} grew past the limit of {self.max_bytes} bytes while being read")

    def resolve(self, ref: str) -> Path:
        """The clip's real path, links followed."""
        root, inside = self._located(ref)
        return root / inside

    def _located(self, ref: str) -> tuple[Path, Path]:
        """The inbox's real path, and the clip's real path relative to it: refused unless it is inside."""
        root, real = Path(os.path.realpath(self.root)), Path(os.path.realpath(voice_path(self.root, ref)))
        if not real.is_relative_to(root):
            raise VoiceNotAllowed(f"voice {ref!r} leads outside the inbox folder through a symbolic link")
        return root, real.relative_to(root)


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
