"""Run the fault scenarios end to end on loopback servers and print the reliability table.

    .venv/bin/python -m scripts.reliability_report [--jobs 100] [--rate 0.2]    # from the repository root

It starts moto and SeaweedFS itself (as the test suite does), builds the tiny
model in a temporary volume, runs each scenario with real worker processes and
prints one Markdown table: scenario, jobs, faults injected, succeeded, failed as
expected, duplicates, lost, and syntheses where a scenario counts them (duplicate
deliveries: the second copies count as the faults). Takes several minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support import scenarios
from tests.support.aws import Endpoint
from tests.support.paths import REPO
from tests.support.volumes import make_tiny_volume


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.reliability_report", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100, help="jobs in the fault-injection scenario")
    parser.add_argument("--rate", type=float, default=0.2, help="fault rate of every S3/SQS request")
    args = parser.parse_args()
    env = {**os.environ, "REPORT_JOBS": str(args.jobs), "REPORT_RATE": str(args.rate)}
    return subprocess.call(
        [sys.executable, "-m", "pytest", str(Path(__file__).resolve()), "-q", "-s", "-p", "no:cacheprovider",
         "--rootdir", str(REPO), "-o", "addopts=", "-o", "timeout=3600"],
        cwd=REPO, env=env,
    )


# pytest runs this file as a one-test session so that the servers come from the same fixtures as the suite's
# (tests/support/aws.py).
pytest_plugins = ["tests.support.aws"]


def test_reliability_report(moto_endpoint: Endpoint, seaweed_endpoint: Endpoint) -> None:
    jobs, rate = int(os.environ.get("REPORT_JOBS", "100")), float(os.environ.get("REPORT_RATE", "0.2"))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        volume = make_tiny_volume(tmp / "volume")
        started = time.monotonic()
        outcomes = [
            scenarios.faults(moto_endpoint, volume, tmp / "faults", jobs=jobs, rate=rate),
            scenarios.killed(moto_endpoint, volume, tmp / "killed"),
            scenarios.terminated(moto_endpoint, volume, tmp / "terminated"),
            scenarios.s3_inbox_leases(seaweed_endpoint, volume, tmp / "leases"),
            scenarios.duplicate_deliveries(moto_endpoint, volume, tmp / "duplicates"),
            scenarios.hostile(volume, tmp / "hostile"),
            scenarios.hostile_world(volume, tmp / "hostile-world"),
        ]
        took = time.monotonic() - started
    print()
    print(f"Reliability report, {time.strftime('%Y-%m-%d')}, {platform.machine()} with {_cpus()} CPUs, "
          f"tiny model, moto + SeaweedFS on loopback, {took:.0f} s")
    print()
    print(scenarios.markdown_table(outcomes))
    assert all(o.lost == 0 and o.duplicates == 0 for o in outcomes)
    assert all(o.syntheses is None or o.syntheses <= o.jobs for o in outcomes), "a job was synthesized twice"


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    raise SystemExit(main())
