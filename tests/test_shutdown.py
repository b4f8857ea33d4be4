"""SIGTERM and SIGINT: stop taking jobs, finish or release the one in hand, exit 0, lose nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from processor.app import build_worker
from processor.shutdown import Shutdown
from processor.storage import Inbox, Lease, Outbox
from processor.storage.volume import Volume
from processor.worker import Worker

from tests.support.aws import Endpoint, unique_name, voice_bucket
from tests.support.manifests import inbox_with_voice, manifest, write_manifest
from tests.support.results import read_result, read_s3_result
from tests.support.workers import local_settings, local_worker_args, run_cli, start_worker, wait_for_text

SLOW = " ".join(["This long text keeps the worker busy for several seconds."] * 12)


def local_worker(tmp: Path, volume: Volume, *extra: str, env: dict[str, str] | None = None,
                 log: Path) -> subprocess.Popen[str]:
    return start_worker(*local_worker_args(tmp, volume, *extra), log=log, env={**os.environ, **(env or {})})


def stop(worker: subprocess.Popen[str], signum: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, float]:
    started = time.monotonic()
    worker.send_signal(signum)
    code = worker.wait(timeout)
    return code, time.monotonic() - started


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    return inbox_with_voice(tmp_path)


def test_idle_worker_exits_at_once(tmp_path: Path, inbox: Path, tiny_volume: Volume) -> None:
    log = tmp_path / "w.log"
    worker = local_worker(tmp_path, tiny_volume, log=log)
    wait_for_text(log, "loaded on")
    time.sleep(0.5)
    code, took = stop(worker)
    assert code == 0 and took < 5, log.read_text()
    assert "stopped by signal" in log.read_text()


def test_job_in_hand_is_finished_within_the_grace_period(tmp_path: Path, inbox: Path, tiny_volume: Volume) -> None:
    write_manifest(inbox, "a-slow", manifest(SLOW, nfe_step=8))
    write_manifest(inbox, "b-next", manifest("Not started before the stop."))
    log = tmp_path / "w.log"
    worker = local_worker(tmp_path, tiny_volume, log=log, env={"F5B_SHUTDOWN_GRACE_S": "120"})
    wait_for_text(log, '"stage": "synthesizing"')
    code, _ = stop(worker, timeout=150)
    assert code == 0
    result = read_result(tmp_path / "outbox", "a-slow")
    assert result["status"] == "succeeded"
    assert (inbox / "b-next.json").exists(), "no new job was taken after the signal"
    assert list((inbox / ".claims").iterdir()) == []


@pytest.mark.parametrize("how", ["grace-over", "second-signal"])
def test_unfinished_job_is_released_and_completed_once_elsewhere(tmp_path: Path, inbox: Path,
                                                                tiny_volume: Volume, how: str) -> None:
    write_manifest(inbox, "slow", manifest(SLOW, nfe_step=8))
    log = tmp_path / "w.log"
    grace = "1" if how == "grace-over" else "120"
    worker = local_worker(tmp_path, tiny_volume, log=log, env={"F5B_SHUTDOWN_GRACE_S": grace})
    wait_for_text(log, '"stage": "synthesizing"')
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    if how == "second-signal":
        time.sleep(0.3)
        worker.send_signal(signal.SIGINT)
    assert worker.wait(30) == 0
    assert time.monotonic() - started < 5, "left within the grace period, not after the job"
    assert not (tmp_path / "outbox" / "slow" / "result.json").exists()
    assert (inbox / "slow.json").exists(), "the claim went back to the inbox at once"

    again = run_cli("run", "--once", "--inbox", str(inbox), "--outbox", str(tmp_path / "outbox"),
                    "--volume", str(tiny_volume.root), "--model", "tiny",
                    "--processing-dir", str(tmp_path / "processing"))
    assert again.returncode == 0, again.stdout[-2000:]
    assert read_result(tmp_path / "outbox", "slow")["status"] == "succeeded"


def test_sqs_message_is_visible_again_at_once_after_shutdown(moto_endpoint: Endpoint, tmp_path: Path,
                                                             tiny_volume: Volume) -> None:
    s3, sqs = moto_endpoint.client("s3"), moto_endpoint.client("sqs")
    bucket = voice_bucket(s3)
    queue = sqs.create_queue(QueueName=unique_name("q"), Attributes={"VisibilityTimeout": "600"})["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(manifest(SLOW, nfe_step=8, id="slow")))
    log = tmp_path / "w.log"
    env = {**moto_endpoint.env(), "F5B_SHUTDOWN_GRACE_S": "1", "F5B_S3_PATH_STYLE": "true",
           "F5B_RECEIVE_WAIT_S": "1"}
    common = ["--queue", queue, "--inbox", f"s3://{bucket}/inbox/", "--outbox", f"s3://{bucket}/outbox/"]
    worker = local_worker(tmp_path, tiny_volume, *common, log=log, env=env)
    wait_for_text(log, '"stage": "fetched"')
    code, took = stop(worker)
    assert code == 0 and took < 5
    visible = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])
    assert visible["Attributes"]["ApproximateNumberOfMessages"] == "1", "released, not waiting out 600 s"

    log2 = tmp_path / "w2.log"
    rescuer = local_worker(tmp_path, tiny_volume, *common, "--once", log=log2, env=env)
    assert rescuer.wait(180) == 0, log2.read_text()[-2000:]
    result = read_s3_result(s3, bucket, "slow", "outbox/")
    assert result["status"] == "succeeded"
    assert sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"][
        "ApproximateNumberOfMessages"] == "0"


def abandon_once(worker: Worker, moment: threading.Event, exit: Callable[[int], None]) -> None:
    """Run `worker` until `moment`, then do what a SIGTERM whose grace runs out does; `exit` only records."""
    shutdown = Shutdown(0, exit=exit)
    running = threading.Thread(target=worker.run, kwargs={"once": False, "shutdown": shutdown})
    running.start()
    assert moment.wait(120)
    shutdown.requested.set()
    shutdown.abandon()
    running.join(120)


class ClaimOnTheWire:
    """A local inbox whose claims take a while to come back, as a receive over a slow network does."""

    def __init__(self, inbox: Inbox, delay_s: float) -> None:
        self.inbox, self.delay_s = inbox, delay_s
        self.claimed = threading.Event()

    def claim(self, *, once: bool, stop: threading.Event) -> Sequence[Lease]:
        leases = self.inbox.claim(once=once, stop=stop)
        if leases:
            self.claimed.set()  # the source holds the lease; the worker does not know it yet
            time.sleep(self.delay_s)
        return leases


def test_a_claim_in_progress_when_the_grace_runs_out_is_released_before_exit(tmp_path: Path, inbox: Path,
                                                                             tiny_volume: Volume) -> None:
    write_manifest(inbox, "on-the-wire", manifest("Hello there.", nfe_step=2))
    worker = build_worker(local_settings(tmp_path, tiny_volume))
    source = worker.inbox = ClaimOnTheWire(worker.inbox, delay_s=0.5)
    claims_at_exit: list[list[str]] = []
    abandon_once(worker, source.claimed,
                 exit=lambda code: claims_at_exit.append([p.name for p in (inbox / ".claims").glob("*")]))
    assert claims_at_exit == [[]], "the claim was returned before the process left"
    assert (inbox / "on-the-wire.json").exists()


class SlowResults:
    """An outbox whose result writes take a while: the grace period can run out in the middle of one."""

    def __init__(self, outbox: Outbox, delay_s: float) -> None:
        self.outbox, self.delay_s = outbox, delay_s
        self.writing = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.outbox, name)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        self.writing.set()
        time.sleep(self.delay_s)
        return self.outbox.put_if_absent(key, data)


def test_a_job_whose_result_is_being_written_at_abandon_is_finished_not_lost(tmp_path: Path, inbox: Path,
                                                                            tiny_volume: Volume) -> None:
    write_manifest(inbox, "finishing", manifest("Hello there.", nfe_step=2))
    worker = build_worker(local_settings(tmp_path, tiny_volume))
    outbox = worker.outbox = SlowResults(worker.outbox, delay_s=0.5)
    at_exit: list[tuple[list[str], bool]] = []
    result = tmp_path / "outbox" / "finishing" / "result.json"
    abandon_once(worker, outbox.writing,
                 exit=lambda code: at_exit.append(([p.name for p in (inbox / ".claims").glob("*")], result.exists())))
    assert at_exit == [([], True)], "the result was written and the manifest acknowledged before the exit"


class SlowBeats:
    """A local inbox whose leases take a while to extend, and which records what was done to them, in order."""

    def __init__(self, inbox: Inbox, extend_s: float) -> None:
        self.inbox, self.extend_s = inbox, extend_s
        self.calls: list[str] = []
        self.extending = threading.Event()

    def claim(self, *, once: bool, stop: threading.Event) -> Sequence[Lease]:
        return [self._recorded(lease) for lease in self.inbox.claim(once=once, stop=stop)]

    def _recorded(self, lease: Lease) -> Any:
        source = self

        class Recorded:
            def __getattr__(self, name: str) -> Any:
                return getattr(lease, name)

            def extend(self) -> None:
                source.calls.append("extend")
                source.extending.set()
                time.sleep(source.extend_s)  # the request is on the wire
                lease.extend()
                source.calls.append("extended")

            def release(self) -> None:
                source.calls.append("release")
                lease.release()

        return Recorded()


def test_a_heartbeat_in_flight_at_abandon_lands_before_the_release(tmp_path: Path, inbox: Path,
                                                                   tiny_volume: Volume) -> None:
    """Otherwise the late extend would hide the released job again for a whole lease."""
    write_manifest(inbox, "beating", manifest(SLOW, nfe_step=32))
    worker = build_worker(local_settings(tmp_path, tiny_volume))
    worker.heartbeat_s = 0.2
    source = worker.inbox = SlowBeats(worker.inbox, extend_s=0.5)
    abandon_once(worker, source.extending, exit=lambda code: None)
    assert source.calls[-1] == "release" and source.calls.count("release") == 1, source.calls
