"""Under injected network faults, throttling and 5xx, and with workers killed or stopped, no job is lost or doubled."""

from __future__ import annotations

from pathlib import Path

from processor.storage.volume import Volume

from tests.support import scenarios
from tests.support.aws import Endpoint
from tests.support.workers import log_tails


def test_jobs_under_twenty_percent_faults_end_exactly_once(moto_endpoint: Endpoint, tmp_path: Path,
                                                          tiny_volume: Volume) -> None:
    """30 jobs here to keep the suite short; `scripts/reliability_report.py` runs the same scenario with 100."""
    outcome = scenarios.faults(moto_endpoint, tiny_volume, tmp_path, jobs=30, rate=0.2, timeout=240)
    assert outcome.faults > 20, "faults were really injected"
    assert (outcome.succeeded, outcome.duplicates, outcome.lost) == (30, 0, 0), \
        f"{outcome}\n{log_tails(tmp_path)}"


def test_stopped_pods_release_their_jobs(moto_endpoint: Endpoint, tmp_path: Path, tiny_volume: Volume) -> None:
    outcome = scenarios.terminated(moto_endpoint, tiny_volume, tmp_path, jobs=3, stops=2)
    assert (outcome.succeeded, outcome.duplicates, outcome.lost) == (3, 0, 0), \
        f"{outcome}\n{log_tails(tmp_path)}"
