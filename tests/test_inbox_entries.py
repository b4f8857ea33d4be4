"""Whatever sits in a local inbox, intake goes on: one batch of odd entries through the real worker CLI.

Each entry ends alone. A manifest whose claim name would be too long is claimed under a shortened name; a
directory named `*.json` is left where it is (a warning, once); every other entry that is not a regular file (a
symbolic link, even to a good manifest, a dangling link, a FIFO, a socket) is claimed by renaming the entry itself,
is never opened, and fails with `manifest_unreadable`; a file over the manifest size limit is refused without being
read; a manifest with a modification time in the future is taken once it has not changed for `F5B_SETTLE_S`; a dead
worker's claim that comes back while a new manifest of the same name waits comes back under another name. `--once`
ends, exit 0, and the worker's memory stays that of a normal run.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from processor.errors import InvalidJson
from processor.job import Job
from processor.leases import HeldLease
from processor.manifest import MAX_MANIFEST_BYTES
from processor.outcomes import Attempts, Released
from processor.shutdown import Shutdown
from processor.storage.entries import NAME_MAX, fit_name
from processor.storage.local import CLAIMS, LocalInbox
from processor.storage.volume import Volume

from tests.support.hostile_world import HUGE_BYTES, LONG_NAME, UNREADABLE, fast, odd_entries, short_voice_inbox
from tests.support.manifests import write_manifest
from tests.support.memory import MEMORY_MARGIN, Measured, run_cli_measuring
from tests.support.results import all_results, read_result
from tests.support.waiting import wait_until
from tests.support.workers import local_worker_args, start_worker, wait_for_exit, wait_for_text


@dataclass
class Batch:
    root: Path
    inbox: Path
    outbox: Path
    run: Measured
    outside: Path

    def result(self, job_id: str) -> dict[str, Any]:
        return read_result(self.outbox, job_id)


def log_events(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def run_once(root: Path, volume: Volume) -> Measured:
    return run_cli_measuring(*local_worker_args(root, volume, "--once"), timeout=180)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory, tiny_volume: Volume) -> Measured:
    """One normal manifest: what the odd batch's memory is measured against."""
    root = tmp_path_factory.mktemp("baseline")
    write_manifest(short_voice_inbox(root), "plain", fast("Hello there."))
    measured = run_once(root, tiny_volume)
    assert measured.returncode == 0, measured.output[-3000:]
    return measured


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, tiny_volume: Volume) -> Batch:
    root = tmp_path_factory.mktemp("entries")
    inbox = short_voice_inbox(root)
    with odd_entries(root, inbox):
        measured = run_once(root, tiny_volume)
    return Batch(root, inbox, root / "outbox", measured, root / "outside.json")


def test_one_odd_entry_never_stops_the_others_and_once_ends(batch: Batch) -> None:
    assert batch.run.returncode == 0, batch.run.output[-5000:]
    [ended] = [e for e in log_events(batch.run.output) if e.get("stage") == "exit"]
    assert ended["msg"] == "inbox drained: 4 succeeded, 6 failed, 0 left", batch.run.output[-3000:]
    assert (ended["succeeded"], ended["failed"], ended["skipped"], ended["left"]) == (4, 6, 0, 0)
    statuses = {job: result["status"] for job, result in all_results(batch.outbox).items()}
    assert statuses == {"long-name": "succeeded", "future": "succeeded",
                        "job-first": "succeeded", "job-second": "succeeded", "huge": "failed",
                        **{name: "failed" for name in UNREADABLE}}
    assert not list((batch.inbox / CLAIMS).iterdir()), "no claim left behind"


def test_a_name_whose_claim_would_be_too_long_is_claimed_and_keeps_its_name(batch: Batch) -> None:
    result = batch.result("long-name")
    assert result["manifest"] == LONG_NAME
    assert (batch.inbox / ".done" / f"{LONG_NAME}.json").is_file()


@pytest.mark.parametrize("name", UNREADABLE)
def test_an_entry_that_is_not_a_regular_file_fails_unopened(batch: Batch, name: str) -> None:
    result = batch.result(name)
    assert result["error"]["code"] == "manifest_unreadable", result["error"]
    assert UNREADABLE[name] in result["error"]["message"]
    assert os.path.lexists(batch.inbox / ".done" / f"{name}.json"), "the entry itself was claimed and moved"


def test_a_link_to_a_good_manifest_is_neither_followed_nor_moved(batch: Batch) -> None:
    assert json.loads(batch.outside.read_text())["text"] == "Reached through a link."
    assert (batch.inbox / ".done" / "linked.json").is_symlink()
    assert os.readlink(batch.inbox / ".done" / "zero.json") == "/dev/zero"


def test_a_manifest_over_the_size_limit_is_refused_unread(batch: Batch) -> None:
    error = batch.result("huge")["error"]
    assert error["code"] == "invalid_manifest"
    assert error["message"] == f"manifest is {HUGE_BYTES} bytes; the limit is {MAX_MANIFEST_BYTES}"


def test_a_directory_named_json_is_left_alone_and_said_once(batch: Batch) -> None:
    assert (batch.inbox / "d.json").is_dir()
    assert not (batch.inbox / ".done" / "d.json").exists()
    said = [event for event in log_events(batch.run.output) if event["msg"].startswith("d.json ")]
    assert [event["level"] for event in said] == ["warning"], said


def test_a_recovered_claim_never_overwrites_a_resubmitted_manifest(batch: Batch) -> None:
    done = {json.loads(p.read_text())["text"] for p in (batch.inbox / ".done").glob("job*.json")}
    assert done == {"First.", "Second."}
    assert "recovered" in batch.result("job-first")["manifest"]


def test_odd_entries_cost_no_more_memory_than_a_normal_job(batch: Batch, baseline: Measured) -> None:
    assert batch.run.peak_rss <= baseline.peak_rss + MEMORY_MARGIN, (batch.run.peak_mb, baseline.peak_mb)


def test_a_manifest_still_being_copied_is_taken_once_complete(tmp_path: Path, tiny_volume: Volume) -> None:
    inbox = short_voice_inbox(tmp_path)
    log = tmp_path / "worker.log"
    worker = start_worker(*local_worker_args(tmp_path, tiny_volume, "--exit-when-idle", "120"), log=log)
    try:
        wait_for_text(log, "loaded")  # the model is loaded: the worker watches the inbox from here on
        body = json.dumps(fast("Copied slowly.")).encode()
        with (inbox / "slow-copy.json").open("wb") as copy:
            copy.write(body[: len(body) // 2])
            copy.flush()
            time.sleep(1.5)  # a copy that stalls (a network file system, a slow disk)
            copy.write(body[len(body) // 2:])
        assert wait_until(lambda: (tmp_path / "outbox" / "slow-copy" / "result.json").exists(), 120)
    finally:
        worker.send_signal(signal.SIGTERM)
    wait_for_exit([worker], [log], timeout=60)
    result = read_result(tmp_path / "outbox", "slow-copy")
    assert result["status"] == "succeeded", result["error"]


# --- one level down ---------------------------------------------------------------------------------


def test_claim_names_fit_the_file_system_and_stay_apart() -> None:
    first, second = fit_name("é" * 200 + "a", "@host.1.json"), fit_name("é" * 200 + "b", "@host.1.json")
    assert first != second and first.startswith("é" * 50) and first.endswith("@host.1.json")
    assert len(os.fsencode(first)) <= NAME_MAX and len(os.fsencode(second)) <= NAME_MAX
    assert fit_name("short", ".json") == "short.json"


def test_a_manifest_that_changed_after_it_was_read_goes_back_instead_of_failing(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, "growing", '{"text": ')
    [lease] = LocalInbox(tmp_path, stale_after_s=600, settle_s=0).claim(once=True, stop=threading.Event())
    held = HeldLease(lease, 600, Shutdown(grace_s=0))
    job = Job(held, 60)
    with pytest.raises(InvalidJson) as err:
        job.read_manifest()
    with lease.claim.open("a") as still_writing:
        still_writing.write('"Hello."}')
    outcome = Attempts(3, 0, 0).after(job, err.value)
    held.end(lambda released: released.release())
    assert isinstance(outcome, Released) and "changed" in outcome.why
    assert path.read_text() == '{"text": "Hello."}'
