"""How a failure ends a job, and what each outcome does to its lease."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from processor.errors import OutOfMemory, ProcessingDiskFull, StorageError, StorageUnavailable, VoiceNotFound
from processor.job import Job
from processor.leases import HeldLease
from processor.outcomes import Attempts, Failed, Redeliver, Released, Skipped, Tally, TryAgain, Unrecorded
from processor.shutdown import Shutdown


@dataclass
class RecordedLease:
    """A lease that only records what is done to it."""

    redelivers: bool
    final_attempt: bool
    delivery: int = 1
    name: str = "job"
    body: bytes = b"{}"
    calls: list[str] = field(default_factory=list)

    def ack(self) -> None:
        self.calls.append("ack")

    def release(self) -> None:
        self.calls.append("release")

    def retry_later(self) -> None:
        self.calls.append("retry_later")

    def extend(self) -> None:
        self.calls.append("extend")


@pytest.fixture
def jobs() -> Iterator[list[Job]]:
    made: list[Job] = []
    yield made
    for job in made:
        job.held.end(lambda lease: None)  # stops its heartbeat


def job_on(jobs: list[Job], lease: RecordedLease, attempt: int = 1) -> Job:
    job = Job(HeldLease(lease, 3600, Shutdown(0)), time_limit_s=60)
    job.attempt = attempt
    jobs.append(job)
    return job


ATTEMPTS = Attempts(max_attempts=3, initial_s=1.0, max_s=30.0)
FOLDER = {"redelivers": False, "final_attempt": True}


def test_bad_input_fails_at_once_wherever_it_came_from(jobs: list[Job]) -> None:
    for where in (FOLDER, {"redelivers": True, "final_attempt": False}):
        assert type(ATTEMPTS.after(job_on(jobs, RecordedLease(**where)), VoiceNotFound("no"))) is Failed


def test_a_queue_redelivers_a_transient_failure_until_its_last_delivery(jobs: list[Job]) -> None:
    early = RecordedLease(redelivers=True, final_attempt=False, delivery=2)
    assert type(ATTEMPTS.after(job_on(jobs, early), StorageUnavailable("down"))) is Redeliver
    last = RecordedLease(redelivers=True, final_attempt=True, delivery=5)
    assert type(ATTEMPTS.after(job_on(jobs, last), OutOfMemory("oom"))) is Failed


def test_from_a_folder_the_worker_tries_again_with_a_growing_pause(jobs: list[Job]) -> None:
    first = ATTEMPTS.after(job_on(jobs, RecordedLease(**FOLDER), attempt=1), ProcessingDiskFull("full"))
    second = ATTEMPTS.after(job_on(jobs, RecordedLease(**FOLDER), attempt=2), OutOfMemory("oom"))
    assert isinstance(first, TryAgain) and isinstance(second, TryAgain)
    assert 0.5 <= first.again_after_s() <= 1.0 and 1.0 <= second.again_after_s() <= 2.0
    last = ATTEMPTS.after(job_on(jobs, RecordedLease(**FOLDER), attempt=3), OutOfMemory("oom"))
    assert type(last) is Failed


def test_a_call_already_retried_is_not_wrapped_in_a_second_retry(jobs: list[Job]) -> None:
    outcome = ATTEMPTS.after(job_on(jobs, RecordedLease(**FOLDER)), StorageUnavailable("down"))
    assert type(outcome) is Failed


@pytest.mark.parametrize(("make", "action"), [(Skipped, "ack"), (Released, "release")])
def test_each_outcome_ends_its_lease_its_own_way(jobs: list[Job], make: type[Skipped | Released],
                                                 action: str) -> None:
    lease = RecordedLease(**FOLDER)
    make(job_on(jobs, lease)).end_lease(lease)
    assert lease.calls == [action]


def test_a_redelivery_asks_the_queue_for_a_later_delivery(jobs: list[Job]) -> None:
    lease = RecordedLease(redelivers=True, final_attempt=False)
    Redeliver(job_on(jobs, lease), StorageUnavailable("down")).end_lease(lease)
    assert lease.calls == ["retry_later"]


def test_a_held_lease_ends_once_whoever_asks_first(jobs: list[Job]) -> None:
    lease = RecordedLease(**FOLDER)
    held = HeldLease(lease, 3600, Shutdown(0))
    held.abandon()
    held.end(lambda lease: lease.ack())
    assert lease.calls == ["release"]


def test_the_tally_counts_each_manifest_once_by_its_last_end(jobs: list[Job]) -> None:
    """Released and then taken again and skipped: finished. Unrecorded, or never ended (abandoned): left."""
    tally = Tally()
    first, again, lost, abandoned = (job_on(jobs, RecordedLease(**FOLDER, name=name)) for name in "aabc")
    for job in (first, again, lost, abandoned):
        tally.took(job)
    tally.ended(Released(first))
    tally.ended(Skipped(again))
    tally.ended(Unrecorded(lost, StorageError("NoSuchBucket")))
    tally.ended(Failed(job_on(jobs, RecordedLease(**FOLDER, name="d")), VoiceNotFound("no")))
    assert tally.fields() == {"succeeded": 0, "failed": 1, "skipped": 1, "left": 2}
    assert tally.summary() == "0 succeeded, 1 failed, 1 skipped (a result existed), 2 left (not finished: see the " \
                              "lines above)"
