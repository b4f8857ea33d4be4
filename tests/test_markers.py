"""In-progress markers: one worker at a time synthesizes a job, however often it is delivered.

The flow (take, defer behind a live marker, take over an expired one, drop) against a folder and against both S3
servers; then duplicate deliveries through the real CLI, counting syntheses in the workers' logs.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from processor.aws import S3Location
from processor.retries import CallRetry
from processor.storage.markers import MARKER, Busy, LocalMarkers, Marker, Markers, S3Markers
from processor.storage.volume import Volume

from tests.support.aws import Endpoint, unique_name
from tests.support.scenarios import duplicate_deliveries

FAST_RETRY = CallRetry(max_attempts=3, initial_s=0.05, max_s=0.2, total_s=5)


def local(tmp_path: Path, identity: str, ttl_s: float = 60) -> LocalMarkers:
    return LocalMarkers(tmp_path / "outbox", identity, ttl_s)


@pytest.fixture(params=["folder", "moto", "seaweedfs"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Makes the markers of one worker (`identity`, `ttl_s`) in one shared outbox of the kind under test."""
    if request.param == "folder":
        return lambda identity, ttl_s=60: local(tmp_path, identity, ttl_s)
    endpoint: Endpoint = request.getfixturevalue(f"{'moto' if request.param == 'moto' else 'seaweed'}_endpoint")
    s3 = endpoint.client("s3")
    name = unique_name("m")
    s3.create_bucket(Bucket=name)
    return lambda identity, ttl_s=60: S3Markers(s3, S3Location(name, "out/"), FAST_RETRY, identity, ttl_s)


def test_a_second_taker_defers_until_the_first_drops_its_marker(backend: Any) -> None:
    first, second = backend("host-a.1"), backend("host-b.2")
    held = first.take("job-1")
    assert isinstance(held, Marker)
    busy = second.take("job-1")
    assert isinstance(busy, Busy) and busy.worker == "host-a.1" and 50 < busy.seconds_left() <= 60
    assert isinstance(first.take("job-1"), Busy), "a second delivery in the same worker defers too"
    assert isinstance(second.take("job-2"), Marker), "markers are per job"
    held.drop()
    assert isinstance(second.take("job-1"), Marker)


def test_renewal_keeps_a_marker_live_and_an_expired_one_is_taken_over(backend: Any) -> None:
    first, second = backend("host-a.1", ttl_s=1.0), backend("host-b.2")
    held = first.take("job-1")
    assert isinstance(held, Marker)
    for _ in range(3):  # 1.5 s in all, past the first expiry: renewals keep it
        time.sleep(0.5)
        held.renew()
        assert isinstance(second.take("job-1"), Busy)
    time.sleep(1.2)  # no renewal: its worker is gone
    taken = second.take("job-1")
    assert isinstance(taken, Marker)
    held.renew()
    assert held.lost, "the old holder learns it lost the marker"
    held.drop()  # a lost marker's drop leaves the new holder's alone
    assert isinstance(first.take("job-1"), Busy)


def test_of_many_workers_taking_an_expired_marker_at_once_one_wins(backend: Any) -> None:
    dead = backend("host-dead.1", ttl_s=0.2)
    assert isinstance(dead.take("job-1"), Marker)
    time.sleep(0.4)
    takers: list[Markers] = [backend(f"host-{n}.{n}") for n in range(6)]
    results: list[Marker | Busy] = []
    gate = threading.Barrier(len(takers))

    def take(markers: Markers) -> None:
        gate.wait()
        results.append(markers.take("job-1"))

    threads = [threading.Thread(target=take, args=(m,)) for m in takers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(isinstance(r, Marker) for r in results) == 1, results


def test_a_local_marker_of_a_dead_process_on_this_host_is_taken_at_once(tmp_path: Path) -> None:
    import socket
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = local(tmp_path, f"{socket.gethostname()}.{gone.pid}", ttl_s=600)
    assert isinstance(stale.take("job-1"), Marker)
    assert isinstance(local(tmp_path, "host-b.2").take("job-1"), Marker)


def test_a_local_marker_is_a_hidden_file_in_the_job_folder_and_is_removed(tmp_path: Path) -> None:
    held = local(tmp_path, "host-a.1").take("job-1")
    assert isinstance(held, Marker)
    path = tmp_path / "outbox" / "job-1" / MARKER
    assert json.loads(path.read_text())["worker"] == "host-a.1"
    held.drop()
    assert not path.exists() and list(path.parent.iterdir()) == []


def test_duplicate_deliveries_synthesize_each_job_once(moto_endpoint: Endpoint, tiny_volume: Volume,
                                                       tmp_path: Path) -> None:
    """Every S3 event sent twice to the queue, two workers: each job is synthesized once and has one result.
    (The reliability report runs 20 jobs on 3 workers.)"""
    outcome = duplicate_deliveries(moto_endpoint, tiny_volume, tmp_path, jobs=6, worker_count=2)
    assert (outcome.succeeded, outcome.duplicates, outcome.lost) == (6, 0, 0), outcome
    assert outcome.syntheses == 6, outcome
    assert outcome.deferred > 0, "the copies were in flight at once: the test must exercise the deferral"
