"""Fault scenarios run end to end against loopback servers, shared by the tests and `scripts/reliability_report.py`.

Each scenario drives real worker processes (the `tiny` model) and counts, per job,
what a consumer of the outbox would see: exactly one `succeeded` result, a
`failed` result where failure was the expected answer, a duplicate (a result
written twice, or audio replaced by different bytes), or nothing at all (lost).
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processor.aws import S3Location
from processor.bootstrap import BootstrapPlan, bootstrap
from processor.storage.volume import Volume

from tests.support import hostile as corpus
from tests.support import hostile_world as world
from tests.support.aws import Endpoint, unique_name, voice_bucket
from tests.support.fault_proxy import FaultProxy
from tests.support.manifests import inbox_with_voice, manifest
from tests.support.paths import VOICE
from tests.support.results import (
    RESULT,
    object_exists,
    object_versions,
    read_result,
    read_s3_result,
    results_present,
)
from tests.support.waiting import wait_until
from tests.support.workers import local_worker_args, log_says, run_cli, worker_env, worker_processes

POLL_S = 0.5  # how often a scenario looks at the outbox or a log: each look lists a bucket


@dataclass
class Outcome:
    scenario: str
    jobs: int
    faults: int
    succeeded: int
    failed_as_expected: int
    duplicates: int
    lost: int
    syntheses: int | None = None  # synthesis calls made for the jobs, where the scenario counts them
    deferred: int = 0  # deliveries that found another worker's live in-progress marker

    HEADER = ("scenario", "jobs", "faults injected", "succeeded", "failed as expected", "duplicates", "lost",
              "syntheses")

    def cells(self) -> tuple[str, ...]:
        return (self.scenario, *(str(v) for v in (self.jobs, self.faults, self.succeeded,
                                                  self.failed_as_expected, self.duplicates, self.lost)),
                "–" if self.syntheses is None else str(self.syntheses))


def markdown_table(outcomes: list[Outcome]) -> str:
    rows = [Outcome.HEADER, tuple("---" for _ in Outcome.HEADER), *(o.cells() for o in outcomes)]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


# --- counting what the outbox shows ----------------------------------------------------------------


def verdict(result: dict[str, Any] | None, want: str) -> str:
    """What a consumer of the outbox sees for a job whose result should say `want` (a status or an error code):
    "succeeded", "failed" (as expected) or "lost" (no result, or the wrong answer, which is as bad as none)."""
    if result is not None and want == "succeeded" and result["status"] == "succeeded":
        return "succeeded"
    if result is not None and result["status"] == "failed" and result["error"]["code"] == want:
        return "failed"
    return "lost"


def count_s3(s3: Any, bucket: str, prefix: str, expected: dict[str, str]) -> tuple[int, int, int, int]:
    """(succeeded, failed as expected, duplicates, lost) for job ids mapped to their expected status or code."""
    versions = object_versions(s3, bucket, prefix)
    verdicts: Counter[str] = Counter()
    duplicates = 0
    for job, want in expected.items():
        key = f"{prefix}{job}/{RESULT}"
        if key not in versions:
            verdicts["lost"] += 1
            continue
        audio = [v for k, vs in versions.items() if k.startswith(f"{prefix}{job}/audio.") for v in vs]
        if len(versions[key]) > 1 or len({v["ETag"] for v in audio}) > 1:
            duplicates += 1  # a retried PUT of the same bytes is not visible to anyone; different bytes are
        verdicts[verdict(read_s3_result(s3, bucket, job, prefix), want)] += 1
    return verdicts["succeeded"], verdicts["failed"], duplicates, verdicts["lost"]


# --- scenarios -------------------------------------------------------------------------------------


@dataclass
class QueueSetup:
    inbox: str
    outbox: str
    queue_url: str
    dlq_url: str


def queue_setup(endpoint: Endpoint, visibility_s: int = 30, max_receive_count: int = 10) -> QueueSetup:
    """Fresh buckets and a queue made by `bootstrap` (notification included), a versioned outbox (so a second
    write shows), and the example voice in the inbox bucket."""
    s3, sqs = endpoint.client("s3"), endpoint.client("sqs")
    inbox, outbox = unique_name("in"), unique_name("out")
    made = bootstrap(BootstrapPlan(unique_name("jobs"), S3Location(inbox, "inbox/"), S3Location(outbox, ""),
                                   create_buckets=True, max_receive_count=max_receive_count,
                                   visibility_timeout_s=visibility_s),
                     s3, sqs)
    s3.put_bucket_versioning(Bucket=outbox, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=inbox, Key="voices/narrator.wav", Body=VOICE.read_bytes())
    return QueueSetup(inbox, outbox, made["queue_url"], made["dlq_url"])


def put_manifests(s3: Any, bucket: str, bodies: dict[str, dict[str, Any]], prefix: str = "inbox/") -> list[str]:
    """Each body as `<prefix><name>.json` in the bucket, as a producer drops it; returns the names."""
    for name, body in bodies.items():
        s3.put_object(Bucket=bucket, Key=f"{prefix}{name}.json", Body=json.dumps(body).encode())
    return list(bodies)


def drop_jobs(endpoint: Endpoint, setup: QueueSetup, count: int, prefix: str = "job", **fields: Any) -> list[str]:
    names = [f"{prefix}-{i:03d}" for i in range(count)]
    bodies = {name: manifest(f"Job {name}.", **{"nfe_step": 2, **fields}) for name in names}
    return put_manifests(endpoint.client("s3"), setup.inbox, bodies)


def faults(moto: Endpoint, volume: Volume, tmp: Path, jobs: int = 100, rate: float = 0.2,
           worker_count: int = 3, seed: int = 7, timeout: float = 400) -> Outcome:
    """S3 and SQS through a proxy that resets, stalls, slows and fails `rate` of all requests."""
    setup = queue_setup(moto, visibility_s=8)
    names = drop_jobs(moto, setup, jobs)
    s3 = moto.client("s3")
    with FaultProxy(moto.url, rate=rate, seed=seed, stall_s=2.0, slow_s=0.2) as proxy:
        env = worker_env(proxy.url, moto, volume, tmp, F5B_AWS_READ_TIMEOUT_S="1", F5B_AWS_CONNECT_TIMEOUT_S="1",
                         F5B_AWS_MAX_ATTEMPTS="8", F5B_AWS_RETRY_TOTAL_S="60", F5B_MAX_ATTEMPTS="5",
                         F5B_LEASE_S="8", F5B_REDELIVERY_BASE_S="1", F5B_RETRY_INITIAL_S="0.2")
        args = ["--queue", setup.queue_url, "--inbox", f"s3://{setup.inbox}/inbox/", "--outbox",
                f"s3://{setup.outbox}/"]
        with worker_processes(worker_count, args, env, tmp / "logs"):
            wait_until(results_present(s3, setup.outbox, "", names), timeout, POLL_S)
            proxy.set_rate(0)  # let the workers release and leave cleanly
        injected = sum(proxy.stats.faults_by_kind().values())
    succeeded, failed, duplicates, lost = count_s3(s3, setup.outbox, "", dict.fromkeys(names, "succeeded"))
    return Outcome(f"S3+SQS faults at {rate:.0%} ({worker_count} workers)", jobs, injected, succeeded, failed,
                   duplicates, lost)


def killed(moto: Endpoint, volume: Volume, tmp: Path, jobs: int = 12, kills: int = 3) -> Outcome:
    """Workers SIGKILLed mid-job, one after another; survivors take the work over after visibility (6 s)."""
    outcome = _interrupted(moto, volume, tmp, jobs, kills, signal.SIGKILL, visibility_s=6,
                           env={"F5B_LEASE_S": "6"})
    outcome.scenario = f"SIGKILL mid-job ({kills} workers killed)"
    return outcome


def terminated(moto: Endpoint, volume: Volume, tmp: Path, jobs: int = 12, stops: int = 3) -> Outcome:
    """Workers sent SIGTERM mid-job with a short grace period: with visibility 300 s, only their release
    makes the jobs come back soon enough for the finishers."""
    outcome = _interrupted(moto, volume, tmp, jobs, stops, signal.SIGTERM, visibility_s=300,
                           env={"F5B_SHUTDOWN_GRACE_S": "0.5"})
    outcome.scenario = f"SIGTERM mid-job ({stops} pods stopped)"
    return outcome


def _interrupted(moto: Endpoint, volume: Volume, tmp: Path, jobs: int, count: int, signum: int,
                 visibility_s: int, env: dict[str, str]) -> Outcome:
    """`count` workers in turn get `signum` while a job is in hand; then two workers finish everything."""
    setup = queue_setup(moto, visibility_s=visibility_s)
    slow = " ".join(["A longer text so that the job is still running when the worker is interrupted."] * 3)
    names = _drop_slow(moto, setup, jobs, slow)
    s3 = moto.client("s3")
    worker_environment = worker_env(moto.url, moto, volume, tmp, **env)
    args = ["--queue", setup.queue_url, "--inbox", f"s3://{setup.inbox}/inbox/", "--outbox", f"s3://{setup.outbox}/"]
    for n in range(count):
        with worker_processes(1, args, worker_environment, tmp / f"interrupted-{n}") as (worker,):
            wait_until(log_says(tmp / f"interrupted-{n}" / "worker-0.log", '"stage": "synthesizing"'), 120, POLL_S)
            worker.send_signal(signum)
            worker.wait(60)
    with worker_processes(2, args, worker_environment, tmp / "finishers"):
        # Well inside pytest's 300 s: a job hidden for the whole visibility must show as lost, with the logs.
        wait_until(results_present(s3, setup.outbox, "", names), 150, POLL_S)
    succeeded, failed, duplicates, lost = count_s3(s3, setup.outbox, "", dict.fromkeys(names, "succeeded"))
    return Outcome("", jobs, count, succeeded, failed, duplicates, lost)


def _drop_slow(endpoint: Endpoint, setup: QueueSetup, count: int, text: str) -> list[str]:
    bodies = {name: manifest(text, nfe_step=4, id=name) for name in (f"slow-{i:03d}" for i in range(count))}
    return put_manifests(endpoint.client("s3"), setup.inbox, bodies)


def duplicate_deliveries(moto: Endpoint, volume: Volume, tmp: Path, jobs: int = 20, worker_count: int = 3,
                         timeout: float = 300) -> Outcome:
    """Every manifest's S3 event delivered twice, the copies side by side in the queue (SQS delivers at least once,
    and S3 may notify twice): each job must be synthesized once, not once per delivery."""
    setup = queue_setup(moto, visibility_s=30)
    s3, sqs = moto.client("s3"), moto.client("sqs")
    names = [f"dup-{i:03d}" for i in range(jobs)]
    for name in names:
        put_manifests(s3, setup.inbox, {name: manifest(f"Job {name}, delivered twice.", nfe_step=4)})
        sqs.send_message(QueueUrl=setup.queue_url, MessageBody=json.dumps(_created_event(setup.inbox, name)))
    env = worker_env(moto.url, moto, volume, tmp, F5B_LEASE_S="30")
    args = ["--queue", setup.queue_url, "--inbox", f"s3://{setup.inbox}/inbox/", "--outbox", f"s3://{setup.outbox}/"]
    with worker_processes(worker_count, args, env, tmp / "logs"):
        wait_until(results_present(s3, setup.outbox, "", names), timeout, POLL_S)
        # The second copies are still to be received, or waiting behind a marker: until they end, nothing is done.
        wait_until(lambda: _queue_empty(sqs, setup.queue_url), 120, POLL_S)
    stages = Counter(event["stage"] for event in log_events(tmp / "logs") if event.get("job") in names)
    succeeded, failed, duplicates, lost = count_s3(s3, setup.outbox, "", dict.fromkeys(names, "succeeded"))
    return Outcome(f"every event delivered twice ({worker_count} workers)", jobs, jobs, succeeded, failed,
                   duplicates, lost, syntheses=stages["synthesized"], deferred=stages["deferred"])


def _created_event(bucket: str, name: str) -> dict[str, Any]:
    """The S3 event notification for a new manifest, as S3 sends it."""
    return {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                         "s3": {"bucket": {"name": bucket}, "object": {"key": f"inbox/{name}.json"}}}]}


def _queue_empty(sqs: Any, queue_url: str) -> bool:
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 0


def log_events(folder: Path) -> list[dict[str, Any]]:
    """Every JSON log line the workers under `folder` wrote."""
    return [event for log in sorted(folder.glob("*.log")) for event in _events(log.read_text())]


def s3_inbox_leases(seaweed: Endpoint, volume: Volume, tmp: Path, jobs: int = 30, worker_count: int = 3) -> Outcome:
    """Several workers scanning one S3 inbox on SeaweedFS, claiming by conditional writes."""
    s3 = seaweed.client("s3")
    bucket = voice_bucket(s3)
    names = put_manifests(s3, bucket, {name: manifest(f"Job {name}.", nfe_step=2)
                                       for name in (f"job-{i:03d}" for i in range(jobs))})
    env = worker_env(seaweed.url, seaweed, volume, tmp)
    args = ["--inbox", f"s3://{bucket}/inbox/", "--outbox", f"s3://{bucket}/outbox/"]
    with worker_processes(worker_count, args, env, tmp / "logs"):
        wait_until(lambda: all(object_exists(s3, bucket, f"outbox/{n}/result.json") for n in names), 300, POLL_S)
    finished = Counter(event["job"] for event in log_events(tmp / "logs") if event.get("stage") == "finished")
    succeeded = sum(1 for n in names if read_s3_result(s3, bucket, n, "outbox/")["status"] == "succeeded")
    duplicates = sum(1 for n in names if finished.get(n, 0) > 1)
    lost = sum(1 for n in names if not object_exists(s3, bucket, f"outbox/{n}/result.json"))
    return Outcome(f"S3 inbox leases on SeaweedFS ({worker_count} workers)", jobs, 0, succeeded, 0, duplicates, lost)


def hostile(volume: Volume, tmp: Path) -> Outcome:
    """The hostile-input corpus (tests/support/hostile.py) in one batch: each bad case must fail with its code."""
    inbox = corpus.write_batch(tmp)
    run_cli(*local_worker_args(tmp, volume, "--once"), env=corpus.WORKER_ENV, timeout=600)
    expected = corpus.expected()
    good = {**corpus.GOOD, **corpus.RAW_GOOD}
    outbox = tmp / "outbox"
    verdicts = Counter(verdict(read_result(outbox, job) if (outbox / job / RESULT).exists() else None, want)
                       for job, want in expected.items())
    stray = [p for p in outbox.rglob("*") if p.is_file() and p.parent.name not in expected]
    assert not stray, f"files written outside the job folders: {stray}"
    done = list((inbox / ".done").glob("*.json"))
    duplicates = len(done) - len(expected)  # a manifest delivered twice leaves a second copy in .done
    return Outcome(f"hostile input ({len(corpus.BAD)} bad, {len(good)} good manifests)", len(expected), 0,
                   verdicts["succeeded"], verdicts["failed"], duplicates, verdicts["lost"])


def hostile_world(volume: Volume, tmp: Path) -> Outcome:
    """The second hostile corpus (tests/support/hostile_world.py) in its batches: each case must end with its
    expected result, nothing may be written through a link, and no secret may be printed."""
    entries, escapes = tmp / "entries", tmp / "escapes"
    with world.odd_entries(entries, world.short_voice_inbox(entries)):
        first = run_cli(*local_worker_args(entries, volume, "--once"), timeout=600)
    world.write_escapes(escapes)
    second = run_cli(*local_worker_args(escapes, volume, "--once"), timeout=600)
    texts = tmp / "texts"
    world.write_texts(inbox_with_voice(texts))
    third = run_cli(*local_worker_args(texts, volume, "--once", "--max-batch", "8"), timeout=600)
    output = first.stdout + second.stdout + third.stdout
    verdicts = _verdicts(entries / "outbox", world.ENTRY_EXPECTED)
    verdicts += _verdicts(escapes / "outbox", world.ESCAPE_EXPECTED)
    verdicts += _verdicts(texts / "outbox", world.TEXT_EXPECTED)
    refused = [event for event in _events(second.stdout) if event.get("job") == world.LINKED_JOB
               and event.get("code") == "storage_error"]
    verdicts["failed" if refused and not any((escapes / "elsewhere").iterdir()) else "lost"] += 1
    assert not [secret for secret in world.SECRETS if secret in output + second.stderr], "a secret was printed"
    finished = Counter(event["job"] for event in _events(output) if event.get("stage") == "finished")
    entry_jobs, escape_jobs = len(world.ENTRY_EXPECTED), len(world.ESCAPE_EXPECTED) + 1
    text_jobs = len(world.TEXT_EXPECTED)
    return Outcome(f"hostile world ({entry_jobs} odd inbox entries, {escape_jobs} paths that lead out, "
                   f"{text_jobs} unbreakable texts)", entry_jobs + escape_jobs + text_jobs, 0, verdicts["succeeded"],
                   verdicts["failed"], sum(1 for n in finished.values() if n > 1), verdicts["lost"])


def _verdicts(outbox: Path, expected: dict[str, str]) -> Counter[str]:
    return Counter(verdict(read_result(outbox, job) if (outbox / job / RESULT).exists() else None, want)
                   for job, want in expected.items())


def _events(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]
