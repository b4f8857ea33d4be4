"""Small disks of a worker's own: a tmpfs mounted over one folder, for the real CLI, touching nothing of the host's.

`unshare -rm` gives the command a private mount namespace (as an unprivileged user too, through a user
namespace), so the tmpfs is seen by that command alone and goes away with it. What it held at the end is
copied out first, to a sibling folder the test can look at.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

# $1 the folder, $2 the tmpfs size in bytes, $3 where its files are copied at the end; the command follows.
_ON_SMALL_DISK = """
dir=$1 size=$2 left=$3
shift 3
mount -t tmpfs -o "size=$size" tmpfs "$dir" || exit 125
"$@"
status=$?
cp -a "$dir/." "$left/"
exit $status
"""


@functools.cache
def small_disks_work() -> bool:
    """This machine lets a process mount a tmpfs in a namespace of its own."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=4096 tmpfs /mnt"],
                           capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


def require_small_disks() -> None:
    if not small_disks_work():
        pytest.skip("`unshare -rm` cannot mount a tmpfs here (no user namespaces): no small disk for the worker")


def run_cli_on_small_disk(folder: Path, size_bytes: int, *args: str, env: dict[str, str] | None = None,
                          timeout: float = 240) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`f5-batch <args>` with `folder` on a tmpfs of `size_bytes`; the run, and a copy of what the tmpfs held
    when it ended (`<folder>.left`). The folder itself shows its own files again afterwards, not the tmpfs's."""
    require_small_disks()
    folder.mkdir(parents=True, exist_ok=True)
    left = folder.with_name(f"{folder.name}.left")
    left.mkdir()
    command = ["unshare", "-rm", "sh", "-c", _ON_SMALL_DISK, "sh", str(folder), str(size_bytes), str(left),
               sys.executable, "-m", "processor", *args]
    out = subprocess.run(command, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                         timeout=timeout, check=False)
    return out, left
