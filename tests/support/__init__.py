"""Helpers shared by the tests, the benchmarks (`bench/`) and `scripts/reliability_report.py`, one concern a module.

    paths        where the repository, the example manifests and the example voice are
    manifests    manifest bodies and an inbox to drop them into
    volumes      the tiny random model on a volume
    workers      the real CLI and worker processes: starting, stopping and waiting for them, their settings,
                 environment and logs
    waiting      the one `wait_until`
    disks        small disks of a worker's own: the CLI with one folder on a tiny tmpfs
    results      reading what an outbox shows: result.json files, object versions
    aws          moto and SeaweedFS on loopback (pytest fixtures too: loaded as a plugin by tests/conftest.py)
    fault_proxy  a fault-injecting HTTP proxy in front of moto
    scenarios    the fault scenarios of the reliability report, end to end
    hostile      the hostile-input corpus: bad and good manifests, bad voices, each bad case's expected code
    oracle       expected figures computed with F5-TTS's own functions

Run whatever imports them from the repository root (`python -m pytest`, `python -m bench.pipeline`,
`python -m scripts.reliability_report`), so that `tests` is importable without any `sys.path` edits.
"""
