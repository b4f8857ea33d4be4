"""Many workers on one queue and one S3 inbox, and workers killed mid-job: every job ends exactly once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

from processor.storage.volume import Volume

from tests.support.aws import Endpoint, voice_bucket
from tests.support.manifests import manifest
from tests.support.results import object_exists, object_versions, read_s3_result, s3_results
from tests.support.scenarios import queue_setup
from tests.support.waiting import wait_until
from tests.support.workers import log_says, wait_for_exit, worker_env
from tests.support.workers import start_worker as start_process  # the name start_worker is this file's own


def start_worker(endpoint: Endpoint, volume: Volume, tmp: Path, *args: str, log: Path,
                 **env: str) -> subprocess.Popen[str]:
    full_env = worker_env(endpoint.url, endpoint, volume, tmp, **{"F5B_RECEIVE_WAIT_S": "2", **env})
    return start_process("run", *args, log=log, env=full_env)


def queue_counts(sqs: Any, url: str) -> tuple[str, str]:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]


def setup_queue(endpoint: Endpoint, visibility_s: int = 300) -> tuple[str, str, dict[str, str]]:
    setup = queue_setup(endpoint, visibility_s, max_receive_count=4)
    return setup.inbox, setup.outbox, {"queue_url": setup.queue_url, "dlq_url": setup.dlq_url}


JOBS = 30  # the reliability report's "3 workers" rows run more: the suite keeps a smaller copy


def test_three_workers_thirty_jobs_exactly_once(moto_endpoint: Endpoint, tmp_path: Path, tiny_volume: Volume) -> None:
    inbox, outbox, made = setup_queue(moto_endpoint)
    s3, sqs = moto_endpoint.client("s3"), moto_endpoint.client("sqs")
    for i in range(JOBS):
        body = manifest(f"Job number {i}.", nfe_step=2, format="flac" if i % 3 == 0 else "wav")
        s3.put_object(Bucket=inbox, Key=f"inbox/job-{i:02d}.json", Body=json.dumps(body).encode())

    logs = [tmp_path / f"worker-{n}.log" for n in range(3)]
    workers = [start_worker(moto_endpoint, tiny_volume, tmp_path, "--queue", made["queue_url"],
                            "--inbox", f"s3://{inbox}/inbox/", "--outbox", f"s3://{outbox}/", "--once", log=log)
               for log in logs]
    wait_for_exit(workers, logs, timeout=400)

    keys = object_versions(s3, outbox)
    results = {k: v for k, v in keys.items() if k.endswith("/result.json")}
    assert len(results) == JOBS, "no job lost"
    for key, result_versions in results.items():
        job = key.split("/")[0]
        assert len(result_versions) == 1, f"{job}: result written once"
        body = read_s3_result(s3, outbox, job)
        assert body["status"] == "succeeded", body["error"]
        audio = [k for k in keys if k.startswith(f"{job}/audio.")]
        assert len(audio) == 1 and len(keys[audio[0]]) == 1, f"{job}: audio written once, never overwritten"
    by_worker = {result["worker"] for result in s3_results(s3, outbox).values()}
    assert len(by_worker) == 3, "the work was shared"
    assert queue_counts(sqs, made["queue_url"]) == ("0", "0")
    assert queue_counts(sqs, made["dlq_url"]) == ("0", "0")


SLOW_TEXT = " ".join(["This long text keeps the worker busy for several seconds."] * 12)


def test_killed_worker_s_message_is_redelivered_after_visibility_and_completes_once(
    moto_endpoint: Endpoint, tmp_path: Path, tiny_volume: Volume
) -> None:
    inbox, outbox, made = setup_queue(moto_endpoint, visibility_s=6)
    s3, sqs = moto_endpoint.client("s3"), moto_endpoint.client("sqs")
    s3.put_object(Bucket=inbox, Key="inbox/slow.json", Body=json.dumps(manifest(SLOW_TEXT, nfe_step=8)).encode())
    common = ("--queue", made["queue_url"], "--inbox", f"s3://{inbox}/inbox/", "--outbox", f"s3://{outbox}/")
    log = tmp_path / "victim.log"
    victim = start_worker(moto_endpoint, tiny_volume, tmp_path, *common, log=log, F5B_LEASE_S="6")
    assert wait_until(log_says(log, '"stage": "fetched"'), 120), "timed out waiting for the victim to start the job"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    assert queue_counts(sqs, made["queue_url"]) == ("0", "1"), "in flight, invisible"

    rescuer_log = tmp_path / "rescuer.log"
    rescuer = start_worker(moto_endpoint, tiny_volume, tmp_path, *common, "--once", log=rescuer_log,
                           F5B_LEASE_S="6", F5B_RECEIVE_WAIT_S="7")  # outlasts the 6 s visibility
    wait_for_exit([rescuer], [rescuer_log], timeout=180)
    keys = object_versions(s3, outbox)
    assert len(keys["slow/result.json"]) == 1 and len(keys["slow/audio.wav"]) == 1
    result = read_s3_result(s3, outbox, "slow")
    assert result["status"] == "succeeded"
    assert queue_counts(sqs, made["queue_url"]) == ("0", "0")


def test_killed_worker_s_s3_lease_is_taken_over_after_expiry(
    seaweed_endpoint: Endpoint, tmp_path: Path, tiny_volume: Volume
) -> None:
    """On SeaweedFS, a real S3 store: the claim is a conditional write, the takeover an If-Match write."""
    s3 = seaweed_endpoint.client("s3")
    bucket = voice_bucket(s3)
    s3.put_object(Bucket=bucket, Key="inbox/slow.json", Body=json.dumps(manifest(SLOW_TEXT, nfe_step=8)).encode())
    for i in range(4):
        s3.put_object(Bucket=bucket, Key=f"inbox/z-quick-{i}.json",
                      Body=json.dumps(manifest(f"Quick {i}.", nfe_step=2)).encode())
    common = ("--inbox", f"s3://{bucket}/inbox/", "--outbox", f"s3://{bucket}/outbox/")
    log = tmp_path / "victim.log"
    victim = start_worker(seaweed_endpoint, tiny_volume, tmp_path, *common, log=log, F5B_LEASE_S="6")
    assert wait_until(log_says(log, '"stage": "fetched"', "slow"), 120), "timed out waiting for the slow job"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)

    logs = [tmp_path / f"rescuer-{n}.log" for n in range(2)]
    rescuers = [start_worker(seaweed_endpoint, tiny_volume, tmp_path, *common, log=path, F5B_LEASE_S="6")
                for path in logs]
    try:
        assert wait_until(lambda: all(object_exists(s3, bucket, f"outbox/{job}/result.json")
                                      for job in ["slow", *[f"z-quick-{i}" for i in range(4)]]), 180), \
            "timed out waiting for all results"
    finally:
        for worker in rescuers:
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
    text = "".join(path.read_text() for path in logs)
    assert "took over the expired lease on slow" in text
    recovered = [json.loads(line) for line in text.splitlines() if '"stage": "recovered"' in line]
    assert "slow" in {e["job"] for e in recovered}, "the victim's claims ahead of it may be taken over too"
    assert {e["previous_owner"] for e in recovered} == {f"{socket.gethostname()}.{victim.pid}"}
    assert all(e["stale_s"] >= 6 for e in recovered), "a lease runs out (F5B_LEASE_S) before its takeover"
    for job in ["slow", *[f"z-quick-{i}" for i in range(4)]]:
        result = read_s3_result(s3, bucket, job, "outbox/")
        assert result["status"] == "succeeded", (job, result["error"])
    finished = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    finished = [e for e in finished if e.get("stage") == "finished"]
    assert sorted(e["job"] for e in finished) == sorted(["slow", *[f"z-quick-{i}" for i in range(4)]]), \
        "each job finished exactly once across the two workers (the killed one finished none)"
