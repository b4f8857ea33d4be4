"""The first mistakes an operator makes, through the real `f5-batch run`: each is found before the model loads and
said in one line on stderr (what failed, and the fix), exit status 2, never a traceback.

Against moto on loopback, with the tiny model on a volume (a run that got past its checks would load it: none
here does, so each case costs about a second).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from processor.storage.volume import Volume

from tests.support.aws import Endpoint, unique_name
from tests.support.paths import REPO


@dataclass
class Setup:
    """What a case may use: a seeded volume, an existing inbox bucket and queue on moto, folders."""

    endpoint: Endpoint
    volume: Path
    tmp: Path
    bucket: str
    queue_url: str
    held_port: int

    def env(self, **changes: str | None) -> dict[str, str]:
        env = self.endpoint.env()
        for key, value in changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "processor", "run", "--once", "--volume", str(self.volume), *args]
        return subprocess.run(command, cwd=REPO, env=env or self.env(), capture_output=True, text=True, timeout=120,
                              check=False)

    @property
    def s3_flags(self) -> tuple[str, ...]:
        return ("--model", "tiny", "--inbox", f"s3://{self.bucket}/inbox/", "--outbox", f"s3://{self.bucket}/outbox/",
                "--queue", self.queue_url)

    @property
    def local_flags(self) -> tuple[str, ...]:
        return ("--model", "tiny", "--inbox", str(self.tmp / "inbox"), "--outbox", str(self.tmp / "outbox"))


@dataclass(frozen=True)
class Mistake:
    name: str
    make: Callable[[Setup], subprocess.CompletedProcess[str]]
    said: tuple[str, ...]  # what the line must name: the cause and the fix


MISTAKES = [
    Mistake("no credentials",
            lambda s: s.run(*s.s3_flags, env=s.env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None)),
            ("no usable AWS credentials", "fix: give the pod credentials", "AWS_ACCESS_KEY_ID")),
    Mistake("no region",
            lambda s: s.run(*s.s3_flags, env=s.env(AWS_REGION=None, AWS_DEFAULT_REGION=None)),
            ("aws.region", "no AWS region", "fix: set AWS_REGION")),
    Mistake("wrong region",
            lambda s: s.run(*s.s3_flags, env=s.env(AWS_REGION="eu-west-1", AWS_DEFAULT_REGION="eu-west-1")),
            ("queue.reachable", "no such queue in region eu-west-1", "set AWS_REGION to the region the queue is in")),
    Mistake("missing outbox bucket",
            lambda s: s.run("--model", "tiny", "--inbox", f"s3://{s.bucket}/inbox/", "--queue", s.queue_url,
                            "--outbox", f"s3://{unique_name('gone')}/outbox/"),
            ("outbox.reachable", "NoSuchBucket", "fix: create the outbox bucket")),
    Mistake("missing queue",
            lambda s: s.run("--model", "tiny", "--inbox", f"s3://{s.bucket}/inbox/", "--outbox",
                            f"s3://{s.bucket}/outbox/", "--queue", s.queue_url.rsplit("/", 1)[0] + "/no-such-queue"),
            ("queue.reachable", "no such queue", "fix: create the queue", "f5-batch bootstrap --queue-name")),
    Mistake("queue without an S3 inbox",
            lambda s: s.run("--model", "tiny", "--queue", s.queue_url, "--outbox", f"s3://{s.bucket}/outbox/"),
            ("inbox.for_queue", "the inbox is the folder 'inbox'", "fix: pass --inbox s3://")),
    Mistake("wrong model name",
            lambda s: s.run("--model", "F5TTS_v2", "--inbox", str(s.tmp / "inbox"), "--outbox", str(s.tmp / "outbox")),
            ("model.complete", "F5TTS_v2", "the volume has tiny", "--model NAME", "f5-batch seed --volume")),
    Mistake("unseeded volume",
            lambda s: s.run("--volume", str(s.tmp / "empty-volume"), "--model", "F5TTS_v1_Base",
                            "--inbox", str(s.tmp / "inbox"), "--outbox", str(s.tmp / "outbox")),
            ("volume.mounted", "does not exist", "f5-batch seed --volume {tmp}/empty-volume --model F5TTS_v1_Base")),
    Mistake("port in use",
            lambda s: s.run(*s.local_flags, "--metrics-port", str(s.held_port)),
            ("metrics.port", "Address already in use", "fix: stop what holds port")),
    Mistake("mistyped F5B_ variable",
            lambda s: s.run(*s.local_flags, env=s.env(F5B_METRIC_PORT="9100")),
            ("F5B_METRIC_PORT is not a setting", "did you mean F5B_METRICS_PORT?", "fix: rename F5B_METRIC_PORT")),
    Mistake("bad value in a variable",
            lambda s: s.run(*s.local_flags, env=s.env(F5B_LEASE_S="five minutes")),
            ("F5B_LEASE_S 'five minutes'", "valid integer", "fix: set F5B_LEASE_S")),
    Mistake("bad value in a flag",
            lambda s: s.run(*s.local_flags, "--prefetch", "-1"),
            ("--prefetch '-1'", "greater than or equal to 0", "fix: set --prefetch")),
]


@pytest.fixture(scope="module")
def setup(moto_endpoint: Endpoint, tiny_volume: Volume, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    bucket = unique_name("mistakes")
    moto_endpoint.client("s3").create_bucket(Bucket=bucket)
    queue_url = moto_endpoint.client("sqs").create_queue(QueueName=unique_name("mistakes"))["QueueUrl"]
    with socket.socket() as holder:  # the port in use
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        yield Setup(moto_endpoint, tiny_volume.root, tmp_path_factory.mktemp("mistakes"), bucket, queue_url,
                    holder.getsockname()[1])


@pytest.fixture(scope="module")
def outputs(setup: Setup) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every mistake's run, three at a time: each is a second of interpreter start-up, mostly waiting on imports."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = {mistake.name: pool.submit(mistake.make, setup) for mistake in MISTAKES}
        return {name: run.result() for name, run in runs.items()}


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.name for m in MISTAKES])
def test_a_mistake_is_one_line_with_its_fix_before_the_model_loads(
    setup: Setup, outputs: dict[str, subprocess.CompletedProcess[str]], mistake: Mistake
) -> None:
    out = outputs[mistake.name]
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert "loaded" not in out.stdout, "the checks come before the model loads"
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("f5-batch run: ")
    for said in mistake.said:
        assert said.replace("{tmp}", str(setup.tmp)) in line, line
