"""`f5-batch doctor`: prove the pod is set up right before it takes work.

Earlier deployments failed in ways a worker only discovers on its first job, or
never: models on a small /tmp, caches on the container disk, a volume not mounted
where expected, a queue without a dead-letter queue. Each check here looks at one
such thing and says pass, warn or fail, and for anything but a pass, the fix
(the same words as docs/troubleshooting.md). The exit status is 1 on any failure,
so a pod's start script can run `f5-batch doctor && f5-batch run`.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from typing import TextIO

from processor.checks import Context, Status, Verdict, asr, encoders, environment, model, storage, volume
from processor.logs import logger
from processor.retries import CallRetry
from processor.settings import Settings


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    hint: str = ""


@dataclass(frozen=True)
class CheckSpec:
    """A check's name (as printed and documented), its function, and the checks that must pass before it means much."""

    name: str
    run: Callable[[Context], Verdict]
    requires: tuple[str, ...] = ()


MODEL_CHECKS = ("model.vocab", "model.weights", "vocoder.loadable")

CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec("python.version", environment.python_version),
    CheckSpec("packages.pinned", environment.packages),
    CheckSpec("accelerator", environment.accelerator),
    CheckSpec("volume.mounted", volume.mounted),
    CheckSpec("volume.writable", volume.writable, ("volume.mounted",)),
    CheckSpec("volume.separate_disk", volume.separate_disk, ("volume.mounted",)),
    CheckSpec("volume.free_space", volume.volume_free_space, ("volume.mounted",)),
    CheckSpec("caches.on_volume", environment.caches),
    CheckSpec("processing.writable", volume.processing_writable),
    CheckSpec("processing.free_space", volume.processing_free_space),
    CheckSpec("model.complete", model.complete, ("volume.mounted",)),
    CheckSpec("model.checksums", model.checksums, ("model.complete",)),
    CheckSpec("model.vocab", model.vocab, ("model.checksums",)),
    CheckSpec("model.weights", model.weights, ("model.checksums",)),
    CheckSpec("vocoder.loadable", model.vocoder, ("model.checksums",)),
    CheckSpec("asr.complete", asr.complete, ("volume.mounted",)),
    CheckSpec("asr.loadable", asr.loadable, ("asr.complete",)),
    CheckSpec("asr.for_check", asr.for_check, ("volume.mounted",)),
    CheckSpec("outbox.not_in_inbox", storage.not_in_inbox),
    CheckSpec("aws.region", storage.region),
    CheckSpec("inbox.for_queue", storage.inbox_for_queue),
    CheckSpec("inbox.reachable", storage.inbox, ("aws.region",)),
    CheckSpec("outbox.reachable", storage.outbox, ("aws.region",)),
    CheckSpec("queue.reachable", storage.queue, ("aws.region",)),
    CheckSpec("queue.redrive", storage.redrive, ("queue.reachable",)),
    CheckSpec("metrics.port", environment.metrics_port),
    CheckSpec("audio.encoders", encoders.ffmpeg_encoders),
    CheckSpec("synthesis.smoke", model.smoke, ("packages.pinned", *MODEL_CHECKS)),
)
CHECK_NAMES = tuple(spec.name for spec in CHECKS)
# What `f5-batch run` checks before the model loads: each can only be found later the hard way (a failed job,
# a traceback after a minute of loading). Quick ones only: no checksums, no test synthesis.
STARTUP_CHECKS = ("volume.mounted", "model.complete", "processing.writable", "outbox.not_in_inbox", "aws.region",
                  "inbox.for_queue", "inbox.reachable", "outbox.reachable", "queue.reachable", "metrics.port",
                  "asr.for_check", "audio.encoders")


def run_checks(ctx: Context, names: Collection[str] | None = None) -> list[Check]:
    """Run the checks in order (only `names`, if given).

    A check whose prerequisite failed, or was itself skipped, is skipped and names the failure at the root: the
    operator fixes that one line, not a cascade of consequences.
    """
    results: list[Check] = []
    root_failure: dict[str, str] = {}  # check name -> the failed check that blocks it (itself, if it failed)
    for spec in CHECKS:
        if names is not None and spec.name not in names:
            continue
        root = next((root_failure[name] for name in spec.requires if name in root_failure), None)
        if root is None:
            check = run_one(spec, ctx)
            if check.status == "fail":
                root_failure[spec.name] = spec.name
        else:
            check = Check(spec.name, "warn", f"skipped: {root} failed", f"see {root} above")
            root_failure[spec.name] = root
        results.append(check)
    return results


def run_one(spec: CheckSpec, ctx: Context) -> Check:
    """A check that crashes is a failed check with its error, never a traceback instead of a report."""
    try:
        verdict = spec.run(ctx)
    except Exception as exc:
        verdict = Verdict("fail", f"{type(exc).__name__}: {exc}",
                          f"see docs/troubleshooting.md#{anchor(spec.name)}; if the cause is not there, "
                          f"report this line")
    return Check(spec.name, verdict.status, verdict.detail, verdict.hint)


def anchor(name: str) -> str:
    """The GitHub anchor of the check's heading in docs/troubleshooting.md."""
    return name.replace(".", "").lower()


def format_line(check: Check) -> str:
    line = f"{check.status.upper():<4}  {check.name:<22} {check.detail}"
    return f"{line} — fix: {check.hint}" if check.hint else line


def summary(checks: list[Check]) -> str:
    counts = {status: sum(check.status == status for check in checks) for status in ("pass", "warn", "fail")}
    verdict = "not ready: fix the FAIL lines" if counts["fail"] else "ready"
    warnings = f"{counts['warn']} warning" + ("" if counts["warn"] == 1 else "s")
    return f"doctor: {counts['pass']} passed, {warnings}, {counts['fail']} failed: {verdict}"


def quietly(fn: Callable[[], list[Check]]) -> list[Check]:
    """The worker's own log lines (a model loaded, a probe retried) would interleave with the report: muted."""
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return fn()
    finally:
        logger.setLevel(level)


def startup_checks(settings: Settings) -> list[Check]:
    """The checks `run` makes before the model loads: the same functions as doctor's, so the two never disagree."""
    ctx = Context(settings, retry=CallRetry.from_settings(settings))
    return quietly(lambda: run_checks(ctx, STARTUP_CHECKS))


def run_doctor(settings: Settings, *, as_json: bool, out: TextIO = sys.stdout) -> int:
    """Run every check; print one line each (or one JSON document); 0 when nothing failed, 1 otherwise."""
    checks = quietly(lambda: run_checks(Context(settings)))
    ok = not any(check.status == "fail" for check in checks)
    if as_json:
        json.dump({"ok": ok, "checks": [asdict(check) for check in checks]}, out, indent=2)
        out.write("\n")
    else:
        for check in checks:
            print(format_line(check), file=out)
        print(summary(checks), file=out)
    return 0 if ok else 1
