"""Seed a model folder on the volume (TTS or ASR): from the hub, a local mirror, another volume, or random weights.

The worker never touches the network, so everything it loads must be put on the
volume ahead of time, by `f5-batch seed`. Every source goes through one flow:

1. a folder that is complete and matches its `SHA256SUMS` is left alone, without
   contacting the source at all (re-running is cheap and safe);
2. files already present and verified are kept, the rest are fetched;
3. free space is checked before the first byte is fetched;
4. files are fetched into a staging folder on the volume itself (same filesystem,
   so moving them into place is an atomic rename) and verified there;
5. they are moved into place and `SHA256SUMS` is written last, so an interrupted
   run never leaves a folder that looks complete.

On request the flow also derives `model.fp16.safetensors` from the verified weights
(`--fp16-copy`), and keeps it only while it matches them.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from processor.seeding.sources import WEIGHTS, Fp16Copy, SeedError, Source, SourceFile
from processor.storage.volume import FP16_WEIGHTS, ModelFolder, sha256_file

# Headroom for filesystem overhead and the hub's own metadata files in staging.
MIN_SPACE_MARGIN = 256 * 2**20
# Charged for each file whose size a source can neither tell nor estimate before making it.
UNKNOWN_SIZE_ALLOWANCE = 64 * 2**20
SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")

FreeSpace = Callable[[Path], int]
Fetch = Callable[[SourceFile, Path], Path]


@dataclass
class SeedReport:
    """What one run did, for the summary line and for tests that must prove nothing was fetched."""

    folder: ModelFolder
    fetched: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    bytes_fetched: int = 0

    @property
    def already_seeded(self) -> bool:
        return not self.fetched


def disk_free(path: Path) -> int:
    """The real free-space probe; `seed` takes another so tests can simulate a full disk."""
    return shutil.disk_usage(path).free


def seed(
    folder: ModelFolder,
    source: Source,
    *,
    fp16_copy: bool = False,
    free_space: FreeSpace = disk_free,
    out: TextIO | None = None,
) -> SeedReport:
    """Make `folder` complete and verified from `source`, fetching only what is missing.

    With `fp16_copy`, also derive model.fp16.safetensors from the weights; a complete
    folder that only lacks it gets it without the source being contacted.
    """
    out = out or sys.stdout
    report = SeedReport(folder)
    seeded = is_seeded(folder)
    if seeded and (folder.weights_fp16.is_file() or not fp16_copy):
        for rel in (*folder.required_files, *folder.optional_files()):
            report_present(report, rel, out)
        return report

    to_fetch = [] if seeded else plan(folder, source, report, out)
    fp16 = plan_fp16(folder, to_fetch, fp16_copy, report, out)
    check_free_space(folder, [*to_fetch, *([fp16] if fp16 else [])], free_space)
    staging = staging_dir(folder)
    shutil.rmtree(staging, ignore_errors=True)  # left over by a run that was killed
    try:
        staging.mkdir(parents=True)
        fetched = {file.target: fetch_verified(source.fetch, file, staging, report, out) for file in to_fetch}
        if fp16 is not None:
            derive = Fp16Copy(fetched.get(WEIGHTS, folder.weights)).fetch
            fetched[FP16_WEIGHTS] = fetch_verified(derive, fp16, staging, report, out)
        install(folder, fetched, staging, keep_fp16=FP16_WEIGHTS in report.present)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def plan(folder: ModelFolder, source: Source, report: SeedReport, out: TextIO) -> list[SourceFile]:
    """The source's files that the folder lacks (or holds damaged); those it holds intact are reported present."""
    wanted = source.files()
    recorded = target_checksums(folder)
    keep = {file.target for file in wanted if is_present(folder, file, recorded)}
    if source.all_or_nothing and len(keep) < len(wanted):
        keep = set()
    for target in sorted(keep):
        report_present(report, target, out)
    return [file for file in wanted if file.target not in keep]


def plan_fp16(
    folder: ModelFolder, to_fetch: list[SourceFile], wanted: bool, report: SeedReport, out: TextIO
) -> SourceFile | None:
    """The fp16 copy to derive in this run, if any. A copy is kept only if recorded and made from the kept weights."""
    weights = next((file for file in to_fetch if file.target == WEIGHTS), None)
    copy = SourceFile(FP16_WEIGHTS, f"{WEIGHTS}, converted to fp16", None, None)
    if weights is None and is_present(folder, copy, target_checksums(folder)):
        report_present(report, FP16_WEIGHTS, out)
        return None
    if not wanted:
        return None
    fp32_bytes = folder.weights.stat().st_size if weights is None else weights.size or weights.size_hint
    return SourceFile(copy.target, copy.origin, None, None, size_hint=fp32_bytes // 2 if fp32_bytes else None)


def is_seeded(folder: ModelFolder) -> bool:
    """Complete and matching SHA256SUMS: then the source is not even contacted (works offline)."""
    try:
        return folder.is_complete()
    except ValueError:  # a garbled SHA256SUMS: the folder is simply not verified
        return False


def target_checksums(folder: ModelFolder) -> dict[str, str]:
    try:
        return folder.recorded_checksums()
    except ValueError:
        return {}


def is_present(folder: ModelFolder, file: SourceFile, recorded: dict[str, str]) -> bool:
    """True when the folder already holds `file`: right size, and the source's (else the recorded) digest."""
    path = folder.path / file.target
    if not path.is_file():
        return False
    if file.size is not None and path.stat().st_size != file.size:
        return False
    expected = file.sha256 or recorded.get(file.target)
    return expected is not None and sha256_file(path) == expected.lower()


def check_free_space(folder: ModelFolder, to_fetch: list[SourceFile], free_space: FreeSpace) -> None:
    """Fail before fetching rather than fill the volume halfway through a multi-GB download."""
    if not to_fetch:
        return
    payload = sum(expected_size(file) for file in to_fetch)
    needed = payload + max(MIN_SPACE_MARGIN, payload // 20)
    where = existing_ancestor(folder.path)
    free = free_space(where)
    if free < needed:
        raise SeedError(
            f"not enough free space on {where}: need {needed} bytes ({format_size(needed)}: "
            f"{format_size(payload)} to fetch plus margin), only {free} bytes ({format_size(free)}) free"
        )


def expected_size(file: SourceFile) -> int:
    if file.size is not None:
        return file.size
    return UNKNOWN_SIZE_ALLOWANCE if file.size_hint is None else file.size_hint


def existing_ancestor(path: Path) -> Path:
    """`path` or its nearest existing parent: disk_usage needs a path that exists."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def staging_dir(folder: ModelFolder) -> Path:
    """On the volume, next to the folder: same filesystem, so os.replace into place is atomic."""
    return folder.path.parent / f".staging-{folder.name}"


def fetch_verified(fetch: Fetch, file: SourceFile, staging: Path, report: SeedReport, out: TextIO) -> Path:
    """Fetch (or write, for generated files) one file into staging and verify it there, before it is used."""
    if file.content is not None:
        path = staging / "generated" / file.target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(file.content)
    else:
        path = fetch(file, staging)
    verify(file, path)
    size = path.stat().st_size
    report.fetched.append(file.target)
    report.bytes_fetched += size
    print(f"  fetched  {file.target:<24} {format_size(size):>10}  from {file.origin}", file=out, flush=True)
    return path


def verify(file: SourceFile, path: Path) -> None:
    """Check what the source promised; a size check alone still catches truncated non-LFS downloads."""
    size = path.stat().st_size
    if file.size is not None and size != file.size:
        raise SeedError(f"{file.target} from {file.origin}: expected {file.size} bytes, got {size}")
    if file.sha256 is None:
        return
    actual = sha256_file(path)
    if actual != file.sha256.lower():
        raise SeedError(
            f"{file.target} from {file.origin} is corrupt: expected sha256 {file.sha256.lower()}, got {actual}"
        )


def install(folder: ModelFolder, fetched: dict[str, Path], staging: Path, *, keep_fp16: bool = False) -> None:
    """Move verified files into place and write SHA256SUMS last.

    An fp16 copy neither made nor verified in this run is removed: it may be of
    other weights, and SHA256SUMS would otherwise vouch for it.
    """
    if not folder.path.exists():
        install_new(folder, fetched, staging)
        return
    # Until the new record is written the folder must not look complete, even to a check that skips hashing.
    folder.checksums_file.unlink(missing_ok=True)
    if not keep_fp16 and FP16_WEIGHTS not in fetched:
        folder.weights_fp16.unlink(missing_ok=True)
    move_files(folder, fetched)
    folder.write_checksums()


def install_new(folder: ModelFolder, fetched: dict[str, Path], staging: Path) -> None:
    """A fresh folder is assembled in staging and renamed into place: it appears whole or not at all."""
    assembled = replace(folder, path=staging / "assembled" / folder.name)
    move_files(assembled, fetched)
    assembled.write_checksums()
    folder.path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(assembled.path, folder.path)


def move_files(folder: ModelFolder, fetched: dict[str, Path]) -> None:
    for target, path in fetched.items():
        dest = folder.path / target
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)


def report_present(report: SeedReport, target: str, out: TextIO) -> None:
    report.present.append(target)
    size = format_size((report.folder.path / target).stat().st_size)
    print(f"  present  {target:<24} {size:>10}", file=out)


def format_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    exponent = min(int(math.log(size, 1024)), len(SIZE_UNITS) - 1)
    return f"{size / 1024**exponent:.1f} {SIZE_UNITS[exponent]}"
