"""Local folders as inbox, outbox and voice source: the embedded default.

A manifest is claimed by renaming it into `<inbox>/.claims/`, which is atomic on
one filesystem: of several workers renaming the same file, exactly one wins.
The claim's name records its owner (`<name>@<host>.<pid>.json`), so a restarted
worker can return claims whose owner died. Finished manifests move to
`<inbox>/.done/`. Nothing is ever moved over another file: a claim that comes
back to a name taken meanwhile comes back under another name.

Whatever else sits in the inbox ends alone: a folder named `*.json` is left
where it is; any other entry that is not a regular file (a link, a FIFO, a
socket, a device) is claimed by renaming the entry itself, is never opened,
and fails with `manifest_unreadable`.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
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
from processor.logs import logger
from processor.manifest import printable, safe_id
from processor.storage.entries import (
    READ_FLAGS,
    Settling,
    Stamp,
    and_then,
    entry_kind,
    fit_name,
    not_regular,
    place,
    read_manifest_file,
    stamp,
)
from processor.transcripts import MAX_SIDECAR_BYTES, read_sidecar, sidecar_of

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
    name: str  # the manifest's own name, without .json: what a release gives back, whatever the claim is called
    kind: str | None = None  # what the entry is when not a regular file: it is never opened
    _body: bytes | None = None
    _read: Stamp | None = None
    _touched_ns: int | None = None  # the modification time the last extend set
    delivery: int = 1
    redelivers: bool = False  # a folder has no redelivery: the worker tries again itself
    final_attempt: bool = True

    @property
    def label(self) -> str:
        return printable(f"{self.name}.json")

    @property
    def body(self) -> bytes:
        if self.kind is not None:
            raise not_regular(self.label, self.kind)
        if self._body is None:
            self._body, self._read = read_manifest_file(self.claim, self.label)
        return self._body

    def changed_since_read(self) -> bool:
        """The claimed file is no longer what was read: a copy was still writing into it."""
        if self._read is None:
            return False
        try:
            size, mtime_ns = stamp(os.lstat(self.claim))
        except OSError:
            return False
        return size != len(self._body or b"") or mtime_ns not in (self._read[1], self._touched_ns)

    def ack(self) -> None:
        done = self.inbox.root / DONE
        done.mkdir(exist_ok=True)
        later = (f"{self.name}.{time.time_ns()}" for _ in itertools.count())
        place(self.claim, done, itertools.chain([self.name], later))

    def release(self) -> None:
        self.inbox.put_back(self.claim, self.name)

    def retry_later(self) -> None:
        self.release()

    def extend(self) -> None:
        now = time.time_ns()
        os.utime(self.claim, ns=(now, now), follow_symlinks=False)  # the link itself, never its target
        self._touched_ns = now


@dataclass
class LocalInbox:
    root: Path
    stale_after_s: float
    identity: str = field(default_factory=worker_identity)
    settle_s: float = 2.0  # F5B_SETTLE_S: a non-atomic copy may still be writing a younger file
    poll_s: float = 1.0
    settling: Settling = field(init=False)
    _left_alone: set[str] = field(default_factory=set)  # folders named *.json, said once
    _unclaimable: dict[str, Stamp] = field(default_factory=dict)  # entries a claim failed on, until they change

    @classmethod
    def open(cls, url: str, settings: Settings, clients: Clients, workdir: WorkDir) -> LocalInbox:
        return cls(Path(url), stale_after_s=settings.claim_stale_s, identity=workdir.identity,
                   settle_s=settings.settle_s)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / CLAIMS).mkdir(exist_ok=True)
        self.settling = Settling(self.settle_s)

    def claim(self, *, once: bool, stop: threading.Event) -> list[LocalLease]:
        self.recover()
        while not stop.is_set():
            waiting = self._pending()
            waits = [self.settling.wait_s(name, st) for name, st in waiting]
            for (name, st), wait_s in zip(waiting, waits, strict=True):
                if wait_s == 0 and (lease := self.take(self.root / name, st)) is not None:
                    return [lease]
            if not waiting:
                if once:
                    return []
                self._wait_for_manifests(stop)
            elif all(wait_s > 0 for wait_s in waits):
                stop.wait(min(waits))
        return []

    def take(self, path: Path, seen: os.stat_result) -> LocalLease | None:
        """Rename the entry itself to a claim name only this worker uses; None when it is gone or cannot be."""
        name = path.name.removesuffix(".json")
        claim = self.root / CLAIMS / fit_name(name, f"@{self.identity}.json")
        try:
            os.rename(path, claim)
        except FileNotFoundError:
            return None  # another worker was faster
        except OSError as exc:
            self._unclaimable[path.name] = stamp(seen)
            logger.warning(f"{printable(path.name)} cannot be claimed, left in the inbox: {exc.strerror}",
                           extra={"stage": "claim", "manifest": printable(path.name)})
            return None
        # A rename keeps the file's old mtime: without a touch, a worker on another host would take this live
        # claim for a stale one (F5B_CLAIM_STALE_S) until the first heartbeat.
        with contextlib.suppress(OSError):
            os.utime(claim, follow_symlinks=False)
        return LocalLease(self, claim, name, kind=entry_kind(seen.st_mode))  # even if swapped since: opened no-follow

    def put_back(self, claim: Path, name: str) -> str | None:
        """Return a claim to the inbox as `<name>.json`, or, that name taken meanwhile, under another: never over it."""
        target = place(claim, self.root, and_then(name, "recovered"))
        if target is None:
            return None
        back = target.name.removesuffix(".json")
        if back != name:
            logger.warning(f"{printable(name)}.json is in the inbox again (a new manifest of that name): the claimed "
                           f"one goes back as {printable(target.name)}", extra={"stage": "claim"})
        return back

    def recover(self) -> list[str]:
        """Return to the inbox the claims of workers that died; names of what was returned."""
        returned = []
        for claim in sorted(self._claims()):
            name, _, owner = claim.name.removesuffix(".json").rpartition("@")
            try:
                why = self._owner_died(owner, claim) if name else None
                if why is None:
                    continue
                renewed_at = os.lstat(claim).st_mtime  # the dead worker's last heartbeat
                back = self.put_back(claim, name)
            except OSError as exc:  # one claim that cannot be returned is left, the others still are
                logger.warning(f"claim {printable(claim.name)} cannot be returned: {exc.strerror}",
                               extra={"stage": "claim"})
                continue
            if back is not None:
                stale_s = round(max(0.0, time.time() - renewed_at), 1)
                logger.warning(f"{printable(name)}.json was claimed by {printable(owner)}, {why}: back in the inbox "
                               f"(its claim was last renewed {stale_s:g} s ago)",
                               extra={"stage": "recovered", "job": safe_id(name), "manifest": printable(f"{name}.json"),
                                      "previous_owner": printable(owner), "stale_s": stale_s})
                returned.append(back)
        return returned

    def _claims(self) -> list[Path]:
        with os.scandir(self.root / CLAIMS) as entries:
            return [Path(entry.path) for entry in entries if entry.name.endswith(".json")]

    def _owner_died(self, owner: str, claim: Path) -> str | None:
        """Why the claim's owner is taken for dead; None while it may be alive."""
        owner_host, _, pid = owner.rpartition(".")
        if owner == self.identity:
            return None
        if owner_host == socket.gethostname() and pid.isdigit():
            return None if pid_alive(int(pid)) else "which is no longer running"
        if time.time() - os.lstat(claim).st_mtime > self.stale_after_s:
            return f"on another host, not renewed within F5B_CLAIM_STALE_S ({self.stale_after_s:g} s)"
        return None

    def _pending(self) -> list[tuple[str, os.stat_result]]:
        """The entries that may be claimed, by name, with what they were when listed."""
        found = []
        with os.scandir(self.root) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.name.endswith(".json"):
                    continue
                with contextlib.suppress(OSError):  # gone since the listing, or unreadable: not pending
                    st = entry.stat(follow_symlinks=False)
                    if self._claimable(entry.name, st):
                        found.append((entry.name, st))
        self.settling.keep_only({name for name, _ in found})
        return sorted(found, key=lambda item: item[0])

    def _claimable(self, name: str, st: os.stat_result) -> bool:
        if stat.S_ISDIR(st.st_mode):
            if name not in self._left_alone:
                self._left_alone.add(name)
                logger.warning(f"{printable(name)} is a folder, not a manifest: left alone",
                               extra={"stage": "claim", "manifest": printable(name)})
            return False
        return self._unclaimable.get(name) != stamp(st)

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
    def folder(self, key: str, *, create: bool = False) -> Iterator[tuple[int, str]]:
        """The open folder of `key` and the file's name in it, reached without following a link below the root."""
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
        with _writing(self._path(key)), self.folder(key, create=True) as (folder, name):
            self._entry(folder, name, key)
            tmp = atomic_write(folder, name, data)
            try:
                # A rename replaces what is at `name` (a link made since the check too), never what a link points to.
                os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
            except BaseException:
                os.unlink(tmp, dir_fd=folder)
                raise

    def put_if_absent(self, key: str, data: bytes) -> bool:
        with _writing(self._path(key)), self.folder(key, create=True) as (folder, name):
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
            with self.folder(key) as (folder, name):
                found = self._entry(folder, name, key)
        except FileNotFoundError:
            return False
        return found is not None and stat.S_ISREG(found.st_mode)

    def get(self, key: str) -> bytes:
        with self.folder(key) as (folder, name):
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

    def transcript(self, ref: str) -> str | None:
        """Read as the clip is (no link out of the inbox, a regular file), and bounded before it is read."""
        sidecar = sidecar_of(ref)
        try:
            fd = self._descriptor(sidecar)
        except VoiceNotFound:
            return None
        with os.fdopen(fd, "rb") as src:
            if entry_kind(os.fstat(src.fileno()).st_mode) is not None:
                return None
            return read_sidecar(sidecar, src.read(MAX_SIDECAR_BYTES + 1))

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
                fd = os.open(name, READ_FLAGS, dir_fd=folder)
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
        if (kind := entry_kind(found.st_mode)) is not None:
            raise VoiceNotFound(f"voice {ref!r} not found: expected a file, found a {kind}")
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
