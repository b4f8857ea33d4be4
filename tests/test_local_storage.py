"""Local inbox claims, recovery and watching; outbox atomicity; voice paths."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from processor.errors import PermanentError, VoiceNotFound
from processor.storage.local import CLAIMS, LocalInbox, LocalOutbox, LocalVoices
from processor.storage.workdir import WorkDir

from tests.support.inboxes import take_all


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def drop(inbox: Path, name: str, body: str = "{}") -> Path:
    path = inbox / f"{name}.json"
    path.write_text(body)
    old = time.time() - 5  # past the settle delay
    os.utime(path, (old, old))
    return path


def test_each_manifest_is_claimed_by_exactly_one_of_many_workers(tmp_path: Path) -> None:
    for i in range(40):
        drop(tmp_path, f"job-{i:02d}")
    # Four workers on four (pretend) hosts: each must see the others' claims as live.
    inboxes = [LocalInbox(tmp_path, stale_after_s=600, identity=f"worker-{n}.example.{os.getpid()}") for n in range(4)]
    claimed: list[list[str]] = [[] for _ in inboxes]

    def drain(n: int) -> None:
        for lease in take_all(inboxes[n]):
            claimed[n].append(lease.name)
            lease.ack()

    threads = [threading.Thread(target=drain, args=(n,)) for n in range(len(inboxes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    everything = [name for names in claimed for name in names]
    assert sorted(everything) == [f"job-{i:02d}" for i in range(40)]
    assert len(list((tmp_path / ".done").glob("*.json"))) == 40


def test_claims_of_a_dead_worker_on_this_host_return_to_the_inbox(tmp_path: Path) -> None:
    inbox = LocalInbox(tmp_path, stale_after_s=600)
    claim_dir = tmp_path / CLAIMS
    (claim_dir / f"orphan@{socket.gethostname()}.{dead_pid()}.json").write_text('{"a": 1}')
    (claim_dir / f"busy@{socket.gethostname()}.{os.getppid()}.json").write_text("{}")
    assert inbox.recover() == ["orphan"]
    assert (tmp_path / "orphan.json").read_text() == '{"a": 1}'
    assert (claim_dir / f"busy@{socket.gethostname()}.{os.getppid()}.json").exists(), "a live owner keeps its claim"


def test_claims_of_other_hosts_return_only_when_stale(tmp_path: Path) -> None:
    inbox = LocalInbox(tmp_path, stale_after_s=60)
    fresh = tmp_path / CLAIMS / "fresh@elsewhere.example.123.json"
    stale = tmp_path / CLAIMS / "stale@elsewhere.example.456.json"
    fresh.write_text("{}")
    stale.write_text("{}")
    old = time.time() - 120
    os.utime(stale, (old, old))
    assert inbox.recover() == ["stale"]
    assert fresh.exists() and (tmp_path / "stale.json").exists()


def test_restarted_worker_runs_recovered_claims(tmp_path: Path) -> None:
    (tmp_path / CLAIMS).mkdir()
    (tmp_path / CLAIMS / f"left@{socket.gethostname()}.{dead_pid()}.json").write_text("{}")
    names = []
    for lease in take_all(LocalInbox(tmp_path, stale_after_s=600, settle_s=0)):
        names.append(lease.name)
        lease.ack()
    assert names == ["left"]


def test_release_returns_the_manifest(tmp_path: Path) -> None:
    drop(tmp_path, "again", '{"x": 1}')
    inbox = LocalInbox(tmp_path, stale_after_s=600)
    lease = next(take_all(inbox))
    assert not (tmp_path / "again.json").exists()
    lease.release()
    assert (tmp_path / "again.json").read_text() == '{"x": 1}'


def test_watch_mode_picks_up_manifests_dropped_later(tmp_path: Path) -> None:
    inbox = LocalInbox(tmp_path, stale_after_s=600, settle_s=0.05, poll_s=0.2)
    seen: list[str] = []

    def consume() -> None:
        for lease in take_all(inbox, once=False):
            seen.append(lease.name)
            lease.ack()
            if len(seen) == 2:
                return

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    time.sleep(0.5)
    assert seen == []
    (tmp_path / "late-1.json").write_text("{}")
    time.sleep(0.3)
    (tmp_path / "late-2.json").write_text("{}")
    thread.join(10)
    assert seen == ["late-1", "late-2"]


def test_unsettled_files_wait_until_they_stop_changing(tmp_path: Path) -> None:
    inbox = LocalInbox(tmp_path, stale_after_s=600, settle_s=0.5)
    (tmp_path / "writing.json").write_text("{")
    start = time.monotonic()
    lease = next(take_all(inbox))
    assert lease.name == "writing" and time.monotonic() - start >= 0.4


def test_hidden_and_non_json_files_are_ignored(tmp_path: Path) -> None:
    drop(tmp_path, ".hidden")
    (tmp_path / "notes.txt").write_text("x")
    assert list(take_all(LocalInbox(tmp_path, stale_after_s=600))) == []


def test_put_if_absent_never_overwrites(tmp_path: Path) -> None:
    outbox = LocalOutbox(tmp_path)
    assert outbox.put_if_absent("job/result.json", b"first")
    assert not outbox.put_if_absent("job/result.json", b"second")
    assert outbox.get("job/result.json") == b"first"
    assert [p.name for p in (tmp_path / "job").iterdir()] == ["result.json"], "no temp file left behind"


def test_put_replaces_atomically(tmp_path: Path) -> None:
    outbox = LocalOutbox(tmp_path)
    outbox.put("a/b.bin", b"1" * 1000)
    outbox.put("a/b.bin", b"2" * 10)
    assert outbox.get("a/b.bin") == b"2" * 10 and outbox.exists("a/b.bin") and not outbox.exists("a/c")


@pytest.mark.parametrize("ref", ["../secret.wav", "/etc/passwd", "s3://bucket/v.wav", "https://x/v.wav",
                                 "voices/../../x.wav", "voices\\..\\x.wav"])
def test_voice_paths_cannot_leave_the_inbox(tmp_path: Path, ref: str) -> None:
    with pytest.raises(PermanentError) as err:
        LocalVoices(tmp_path / "inbox", max_bytes=2**20).fetch(ref, tmp_path)
    assert err.value.code == "voice_not_allowed"


def test_voice_is_copied_into_the_job_folder(tmp_path: Path) -> None:
    (tmp_path / "inbox" / "voices").mkdir(parents=True)
    (tmp_path / "inbox" / "voices" / "v.flac").write_bytes(b"abc")
    job = tmp_path / "job"
    job.mkdir()
    assert LocalVoices(tmp_path / "inbox", max_bytes=2**20).fetch("voices/v.flac", job).read_bytes() == b"abc"
    with pytest.raises(VoiceNotFound):
        LocalVoices(tmp_path / "inbox", max_bytes=2**20).fetch("voices/none.wav", job)


def test_job_scratch_folders_are_fresh_and_removed_whole(tmp_path: Path) -> None:
    """The worker's cleanup after failures too is covered end to end by tests/test_guards.py."""
    workdir = WorkDir(tmp_path)
    workdir.prepare()
    with workdir.scratch("j1", 0) as second:
        with workdir.scratch("j1", 0) as first:
            assert first != second and first.parent == second.parent == workdir.mine
            (first / "nested").mkdir()
            (first / "nested" / "big.bin").write_bytes(b"0" * 1000)
        assert list(workdir.mine.iterdir()) == [second]


def test_scratch_folders_of_dead_workers_are_removed_at_start(tmp_path: Path) -> None:
    leftover = tmp_path / f"{socket.gethostname()}.{dead_pid()}"
    (leftover / "job.x").mkdir(parents=True)
    (leftover / "job.x" / "voice.wav").write_bytes(b"x")
    other_host = tmp_path / "other-host.1"
    other_host.mkdir()
    WorkDir(tmp_path).prepare()
    assert not leftover.exists() and other_host.exists()
