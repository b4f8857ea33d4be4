"""One retry layer: with S3 or SQS failing, one logical call makes at most F5B_AWS_MAX_ATTEMPTS requests.

The requests are counted where they leave the worker, by the fault proxy between it and moto, which answers
every request it is told to fail with a 503 (SlowDown / ServiceUnavailable): the store is down.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from processor.app import build_worker
from processor.storage.volume import Volume

from tests.support.aws import Endpoint, unique_name, voice_bucket
from tests.support.fault_proxy import FaultProxy, Request, is_sqs
from tests.support.manifests import manifest, write_manifest
from tests.support.paths import VOICE
from tests.support.workers import local_settings

AWS_ATTEMPTS = 3
FAST: dict[str, Any] = {"aws_max_attempts": AWS_ATTEMPTS, "aws_retry_total_s": 60, "s3_path_style": True,
                        "retry_initial_s": 0.01, "retry_max_s": 0.01, "receive_wait_s": 0}


def through(proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's boto3 talks to the proxy, as a worker's environment would point it."""
    for name, value in Endpoint(url=proxy.url).env(inherit=False).items():
        monkeypatch.setenv(name, value)


def sqs_op(request: Request, op: str) -> bool:
    return is_sqs(request) and (request.header("X-Amz-Target") == f"AmazonSQS.{op}" or
                                f"Action={op}".encode() in request.body)


def voice_head(method: str, target: str) -> bool:
    return method == "HEAD" and "/voices/narrator.wav" in target.split("?")[0]


def is_voice_head(request: Request) -> bool:
    return voice_head(request.method, request.target)


def test_a_voice_head_to_a_store_that_is_down_is_tried_aws_max_attempts_times(
        moto_endpoint: Endpoint, tmp_path: Path, tiny_volume: Volume, monkeypatch: pytest.MonkeyPatch) -> None:
    """F5B_MAX_ATTEMPTS (3 by default) does not wrap the call's own retries: 3 requests, not 3 × 3."""
    voices = voice_bucket(moto_endpoint.client("s3"), "voices")
    write_manifest(tmp_path / "inbox", "far", manifest("Hi there.", nfe_step=2,
                                                       voice=f"s3://{voices}/voices/narrator.wav"))
    with FaultProxy(moto_endpoint.url, rate=1.0, kinds=("http503",), only=is_voice_head) as proxy:
        through(proxy, monkeypatch)
        worker = build_worker(local_settings(tmp_path, tiny_volume, voice_buckets=voices, **FAST))
        assert worker.run(once=True) == 1
    assert sum(voice_head(method, target) for method, target, _ in proxy.history) == AWS_ATTEMPTS
    result = json.loads((tmp_path / "outbox" / "far" / "result.json").read_text())
    assert (result["status"], result["error"]["code"], result["attempts"]) == ("failed", "storage_unavailable", 1)


def test_from_a_queue_the_voice_head_is_tried_aws_max_attempts_times_per_delivery(
        moto_endpoint: Endpoint, tmp_path: Path, tiny_volume: Volume, monkeypatch: pytest.MonkeyPatch) -> None:
    voices = voice_bucket(moto_endpoint.client("s3"), "voices")
    sqs = moto_endpoint.client("sqs")
    queue = sqs.create_queue(QueueName=unique_name("q"))["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(
        manifest("Hi there.", nfe_step=2, id="queued", voice=f"s3://{voices}/voices/narrator.wav")))
    with FaultProxy(moto_endpoint.url, rate=1.0, kinds=("http503",), only=is_voice_head) as proxy:
        through(proxy, monkeypatch)
        worker = build_worker(local_settings(tmp_path, tiny_volume, queue=queue, voice_buckets=voices,
                                             max_receives=1, **FAST))
        assert worker.run(once=True) == 1
    assert sum(voice_head(method, target) for method, target, _ in proxy.history) == AWS_ATTEMPTS
    result = json.loads((tmp_path / "outbox" / "queued" / "result.json").read_text())
    assert (result["error"]["code"], result["attempts"]) == ("storage_unavailable", 1)


def test_a_result_put_to_a_store_that_is_down_is_tried_aws_max_attempts_times(
        moto_endpoint: Endpoint, tmp_path: Path, tiny_volume: Volume, monkeypatch: pytest.MonkeyPatch) -> None:
    outbox = unique_name("out")
    moto_endpoint.client("s3").create_bucket(Bucket=outbox)
    (tmp_path / "inbox" / "voices").mkdir(parents=True)
    (tmp_path / "inbox" / "voices" / "narrator.wav").write_bytes(VOICE.read_bytes())
    write_manifest(tmp_path / "inbox", "unwritten", manifest("Hi there.", nfe_step=2))

    def is_result_put(request: Request) -> bool:
        return request.method == "PUT" and request.path.endswith("/unwritten/result.json")

    with FaultProxy(moto_endpoint.url, rate=1.0, kinds=("http503",), only=is_result_put) as proxy:
        through(proxy, monkeypatch)
        worker = build_worker(local_settings(tmp_path, tiny_volume, outbox=f"s3://{outbox}/", **FAST))
        worker.run(once=True)
    puts = [target for method, target, _ in proxy.history
            if method == "PUT" and target.split("?")[0].endswith("/unwritten/result.json")]
    assert len(puts) == AWS_ATTEMPTS


def test_a_receive_from_a_queue_that_is_down_is_tried_aws_max_attempts_times(
        moto_endpoint: Endpoint, tmp_path: Path, tiny_volume: Volume, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = moto_endpoint.client("sqs").create_queue(QueueName=unique_name("q"))["QueueUrl"]
    with FaultProxy(moto_endpoint.url, rate=1.0, kinds=("http503",),
                    only=lambda request: sqs_op(request, "ReceiveMessage")) as proxy:
        through(proxy, monkeypatch)
        worker = build_worker(local_settings(tmp_path, tiny_volume, queue=queue, **FAST))
        assert worker.run(once=True) == 0
    assert sum(kind is not None for _, _, kind in proxy.history) == AWS_ATTEMPTS
