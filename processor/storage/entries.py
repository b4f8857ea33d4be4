"""What a folder inbox holds, one entry at a time: its kind, its name, its bytes, its moves, when it is complete.

Everything here holds for an entry whatever it is: a link is never followed, a FIFO never waited on, a file never
read past the manifest size limit, and no move ever lands on a file already there.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from processor.errors import InvalidManifest, ManifestUnreadable
from processor.manifest import MAX_MANIFEST_BYTES

NAME_MAX = 255  # bytes in one file name: ext4, xfs, btrfs, tmpfs, overlayfs (NAME_MAX in <limits.h>)
# Opening a manifest never follows a link, never waits for a FIFO's writer, and is not inherited by children.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# link() refused where a rename is not: fs.protected_hardlinks (another user's file), or no hard links at all.
NO_LINK = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK)

Stamp = tuple[int, int]  # (size, mtime_ns): what says a file changed


def stamp(st: os.stat_result) -> Stamp:
    return st.st_size, st.st_mtime_ns


def fit_name(stem: str, tail: str) -> str:
    """`stem + tail` as one file name: past NAME_MAX bytes, a readable prefix of `stem` and a hash of all of it."""
    if len(os.fsencode(stem + tail)) <= NAME_MAX:
        return stem + tail
    digest = "~" + hashlib.sha256(os.fsencode(stem)).hexdigest()[:16]
    room = NAME_MAX - len(os.fsencode(digest + tail))
    prefix = os.fsencode(stem)[:room].decode("utf-8", "ignore")  # never half a character
    while len(os.fsencode(prefix)) > room:  # a name that is not UTF-8 (surrogate escapes)
        prefix = prefix[:-1]
    return prefix + digest + tail


def entry_kind(mode: int) -> str | None:
    """What an inbox entry is, in words; None for a regular file."""
    kinds = [(stat.S_ISREG, None), (stat.S_ISLNK, "symbolic link"), (stat.S_ISFIFO, "FIFO (named pipe)"),
             (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "folder")]
    return next((kind for test, kind in kinds if test(mode)), "device")


def not_regular(label: str, kind: str) -> ManifestUnreadable:
    return ManifestUnreadable(f"the inbox entry {label} is a {kind}, not a regular file: the worker does not open "
                              "it (nor follow links); put the manifest itself in the inbox as a plain file")


def read_manifest_file(path: Path, label: str) -> tuple[bytes, Stamp]:
    """A regular file's bytes, up to MAX_MANIFEST_BYTES + 1, and its stamp when opened; anything else is refused."""
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise not_regular(label, "symbolic link") from exc
        hint = "; make it readable by the worker's user" if isinstance(exc, PermissionError) else ""
        raise ManifestUnreadable(f"manifest {label} cannot be opened: {exc.strerror}{hint}") from exc
    try:
        st = os.fstat(fd)
        kind = entry_kind(st.st_mode)
        if kind is not None:
            raise not_regular(label, kind)
        if st.st_size > MAX_MANIFEST_BYTES:  # refused unread: a manifest is small, and a sparse file costs nothing
            raise InvalidManifest(f"manifest is {st.st_size} bytes; the limit is {MAX_MANIFEST_BYTES}")
        return read_at_most(fd, MAX_MANIFEST_BYTES + 1, label), stamp(st)
    finally:
        os.close(fd)


def read_at_most(fd: int, limit: int, label: str) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        try:
            chunk = os.read(fd, min(left, 1 << 16))
        except OSError as exc:
            raise ManifestUnreadable(f"manifest {label} cannot be read: {exc.strerror}") from exc
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def same_entry(a: Path, b: Path) -> bool:
    with contextlib.suppress(OSError):
        sa, sb = os.lstat(a), os.lstat(b)
        return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
    return False


def place(src: Path, folder: Path, stems: Iterable[str]) -> Path | None:
    """Move `src` (the entry itself, never a link's target) into `folder` under the first of `stems` that is free.

    Never over a file there: a hard link fails when its name is taken. None: another worker placed it first.
    """
    for stem in stems:
        target = folder / fit_name(stem, ".json")
        try:
            os.link(src, target, follow_symlinks=False)
        except FileExistsError:
            if same_entry(src, target):
                return None
            continue
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno not in NO_LINK:
                raise
            if os.path.lexists(target):
                continue
            os.rename(src, target)  # no link here: checked first, a window of microseconds
            return target
        with contextlib.suppress(FileNotFoundError):
            os.unlink(src)
        return target
    raise AssertionError("stems never run out")


def and_then(name: str, label: str) -> Iterator[str]:
    """`name`, then `name.<label>-1`, `name.<label>-2`, …: where a claim goes when its name is taken."""
    yield name
    for n in itertools.count(1):
        yield f"{name}.{label}-{n}"


@dataclass
class Settling:
    """When an inbox entry is complete: its modification time is `settle_s` old, or its (size, mtime) has not
    changed for `settle_s` as this process saw it, so that a clock ahead of this one delays it by `settle_s` at most."""

    settle_s: float
    _seen: dict[str, tuple[Stamp, float]] = field(default_factory=dict)

    def wait_s(self, name: str, st: os.stat_result) -> float:
        """Seconds until the entry counts as complete; 0: now."""
        now = time.monotonic()
        seen = self._seen.get(name)
        if seen is None or seen[0] != stamp(st):
            seen = self._seen[name] = (stamp(st), now)
        by_age = self.settle_s - (time.time_ns() - st.st_mtime_ns) / 1e9
        by_watch = self.settle_s - (now - seen[1])
        return max(0.0, min(by_age, by_watch))

    def keep_only(self, names: set[str]) -> None:
        for name in self._seen.keys() - names:
            del self._seen[name]
