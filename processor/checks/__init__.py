"""The pieces `f5-batch doctor` is made of: one small function per check, grouped by what it looks at.

Each check takes the `Context` (settings, the environment as read once at the
entry point, and the probes tests replace) and returns a `Verdict`: pass, warn or
fail, what it found, and for anything but a pass the exact fix. The registry that
names and orders them is in `processor/doctor.py`; `docs/troubleshooting.md`
explains every name.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from processor.seeding.cli import DEFAULT_MODEL, RANDOM_SUFFIX, TINY_MODEL
from processor.seeding.flow import disk_free as seeding_disk_free
from processor.seeding.flow import existing_ancestor
from processor.seeding.sources import HUB_MODELS
from processor.settings import Settings
from processor.storage.local import worker_identity
from processor.storage.volume import ModelFolder, Volume

Status = Literal["pass", "warn", "fail"]
FreeSpace = Callable[[Path], int]

# What the worker's own disk is: the volume must not be on it (earlier deployments put models there).
CONTAINER_ROOT = Path("/")
# Probe objects and files never end in .json: no worker and no bucket notification takes them for a job.
PROBE_NAME = ".f5-batch-doctor"
SEED_COMMAND = "f5-batch seed"


@dataclass(frozen=True)
class Verdict:
    status: Status
    detail: str
    hint: str = ""


def passed(detail: str) -> Verdict:
    return Verdict("pass", detail)


def warned(detail: str, hint: str = "") -> Verdict:
    return Verdict("warn", detail, hint)


def failed(detail: str, hint: str) -> Verdict:
    """A failure always says what to do about it."""
    return Verdict("fail", detail, hint)


def disk_free(path: Path) -> int:
    """Free bytes where `path` would live (its nearest existing parent): tests swap it for a full disk."""
    return seeding_disk_free(existing_ancestor(path))


@dataclass
class Context:
    """What every check may look at, gathered once at the entry point."""

    settings: Settings
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    container_root: Path = CONTAINER_ROOT
    free_space: FreeSpace = disk_free
    identity: str = field(default_factory=worker_identity)

    @property
    def volume(self) -> Volume:
        return Volume(self.settings.volume)

    @property
    def folder(self) -> ModelFolder:
        return self.volume.model(self.settings.model)

    @property
    def on_pod(self) -> bool:
        """RunPod sets RUNPOD_POD_ID in every pod: there, what is a warning on a laptop is a failure."""
        return bool(self.environ.get("RUNPOD_POD_ID"))

    @functools.cached_property
    def s3(self) -> Any:
        from processor.checks.storage import probe_client

        return probe_client("s3", self.settings)

    @functools.cached_property
    def sqs(self) -> Any:
        from processor.checks.storage import probe_client

        return probe_client("sqs", self.settings)


def seed_command(settings: Settings, *, fresh: bool = False) -> str:
    """The seed command line that puts `settings.model` on `settings.volume`; `fresh` removes the folder first.

    Re-running the seed command repairs missing or damaged files, but keeps a folder whose files all match
    SHA256SUMS: one seeded from files that do not fit each other has to be removed first.
    """
    name, volume = settings.model, settings.volume
    folder = Volume(volume).model(name)
    if name == TINY_MODEL:
        source = "--tiny"
    elif name in HUB_MODELS:
        source = f"--model {name}"
    elif name.endswith(RANDOM_SUFFIX):
        source = f"--random {name.removesuffix(RANDOM_SUFFIX)}"
    else:
        source = f"--model {name} --from DIR (a complete copy of the model folder)"
    fp16 = " --fp16-copy" if folder.weights_fp16.is_file() else ""
    command = f"{SEED_COMMAND} --volume {volume} {source}{fp16}"
    return f"rm -rf {folder.path} && {command}" if fresh else command


def is_known_model(name: str) -> bool:
    """A name `f5-batch seed` can make without a copy of the folder (`--from`)."""
    return name == TINY_MODEL or name in HUB_MODELS or name.endswith(RANDOM_SUFFIX)


def unseeded_fix(settings: Settings) -> str:
    """For a model that is not on the volume: the models that are, and a seed command that works.

    A name `seed` does not know is most often a typo: its seed command would fail (`unknown model`), so the fix
    names the models there are instead."""
    on_volume = Volume(settings.volume).seeded_models()
    there = (f"the volume has {', '.join(on_volume)}: pass --model NAME (F5B_MODEL) with one of them"
             if on_volume else f"no model is seeded on {settings.volume}")
    if is_known_model(settings.model):
        return f"{seed_command(settings)}; {there}" if on_volume else seed_command(settings)
    known = ", ".join(HUB_MODELS)
    return (f"{there}; or seed one: {SEED_COMMAND} --volume {settings.volume} --model {DEFAULT_MODEL} "
            f"(models seed knows: {known}, {TINY_MODEL}; f5-batch seed --help lists them all)")


@functools.cache
def mount_table() -> tuple[tuple[str, str, str], ...]:
    """(device, mount point, filesystem type) for every mount, from /proc/mounts; empty where there is none."""
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ()
    entries = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 3:
            entries.append((parts[0], parts[1].replace("\\040", " "), parts[2]))
    return tuple(entries)


def where_mounted(path: Path) -> str:
    """`on DEVICE (FSTYPE, mounted at MOUNTPOINT)` for the mount that holds `path`, for the operator to compare."""
    resolved = path.resolve()
    best: tuple[str, str, str] | None = None
    for device, point, fstype in mount_table():
        if resolved.is_relative_to(point) and (best is None or len(point) >= len(best[1])):
            best = (device, point, fstype)
    if best is None:
        return "(mount unknown)"
    device, point, fstype = best
    return f"on {device} ({fstype}, mounted at {point})"


def probe_file(folder: Path, identity: str) -> None:
    """Create and delete a small file in `folder` (made if missing, as the worker would); OSError if either fails."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f"{PROBE_NAME}-{identity}"
    probe.write_bytes(b"f5-batch doctor probe\n")
    probe.unlink()
