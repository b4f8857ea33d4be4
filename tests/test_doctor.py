"""`f5-batch doctor`: every check passes on a good setup and fails, with its fix, on the mistake it exists for."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from processor.aws import S3Location
from processor.bootstrap import BootstrapPlan, bootstrap
from processor.checks import Context
from processor.checks.environment import CACHE_VARIABLES
from processor.doctor import CHECK_NAMES, Check, run_checks, run_doctor
from processor.model import EMA_PREFIX
from processor.settings import Settings
from processor.storage.volume import ModelFolder, Volume

from tests.support.aws import Endpoint, unique_name
from tests.support.paths import REPO
from tests.support.workers import run_cli

SHM = Path("/dev/shm")
BIAS = EMA_PREFIX + "transformer.proj_out.bias"


@pytest.fixture
def volume(tiny_model: ModelFolder, tmp_path: Path) -> Iterator[Volume]:
    """A volume of our own holding a copy of the tiny model (the session's is shared: never corrupt it).

    On a tmpfs where there is one, so that it is on another filesystem than the container disk `/`, as on a pod.
    """
    parent = SHM if SHM.is_dir() and os.access(SHM, os.W_OK) else tmp_path
    root = Path(tempfile.mkdtemp(prefix="f5b-doctor-", dir=parent))
    shutil.copytree(tiny_model.path, root / "models" / "tiny")
    try:
        yield Volume(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def settings(tmp: Path, volume: Volume | Path, **fields: Any) -> Settings:
    root = volume.root if isinstance(volume, Volume) else volume
    base: dict[str, Any] = {"volume": root, "model": "tiny", "device": "auto", "inbox": str(tmp / "inbox"),
                            "outbox": str(tmp / "outbox"), "processing_dir": tmp / "processing"}
    return Settings(**{**base, **fields})


def check(tmp: Path, volume: Volume | Path, *names: str, environ: dict[str, str] | None = None,
          **fields: Any) -> dict[str, Check]:
    """Run only `names`, with a clean environment unless one is given."""
    ctx = Context(settings(tmp, volume, **fields), environ=environ or {})
    return {c.name: c for c in run_checks(ctx, names)}


def corrupt_weights(folder: ModelFolder, change: Any) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder.weights))
    change(state)
    save_file(state, str(folder.weights))
    folder.write_checksums()  # the files match SHA256SUMS: only the shape check can tell


@pytest.fixture
def aws(moto_endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch) -> Endpoint:
    for name, value in moto_endpoint.env(inherit=False).items():
        monkeypatch.setenv(name, value)
    return moto_endpoint


def may_warn() -> set[str]:
    """Here (no GPU) the accelerator warns; where /dev/shm is missing or on `/`, the separate-disk check too."""
    import torch

    allowed = set() if torch.cuda.is_available() else {"accelerator"}
    if not SHM.is_dir() or os.stat(SHM).st_dev == os.stat("/").st_dev:
        allowed.add("volume.separate_disk")
    return allowed


# --- all pass ---------------------------------------------------------------------------------------


def test_everything_passes_against_s3_and_sqs(aws: Endpoint, volume: Volume, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*CACHE_VARIABLES, "RUNPOD_POD_ID"):
        monkeypatch.delenv(name, raising=False)
    s3 = aws.client("s3")
    inbox, outbox = unique_name("in"), unique_name("out")
    for bucket in (inbox, outbox):
        s3.create_bucket(Bucket=bucket)
    made = bootstrap(BootstrapPlan(unique_name("jobs"), inbox=S3Location(inbox, "in/")), s3, aws.client("sqs"))
    env_before = dict(os.environ)
    good = settings(tmp_path, volume, inbox=f"s3://{inbox}/in/", outbox=f"s3://{outbox}/out/",
                    queue=made["queue_url"], s3_path_style=True)

    out = io.StringIO()
    assert run_doctor(good, as_json=True, out=out) == 0, out.getvalue()

    report = json.loads(out.getvalue())
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == list(CHECK_NAMES)
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert {name for name, status in statuses.items() if status != "pass"} <= may_warn(), report
    assert dict(os.environ) == env_before, "doctor leaves the environment as it found it"
    assert "Contents" not in s3.list_objects_v2(Bucket=outbox), "the probe object is deleted"
    assert not list((tmp_path / "processing").iterdir()), "no scratch files left"
    # Without the queue the worker scans the inbox and writes leases there: the probe writes one and deletes it.
    scanned = check(tmp_path, volume, "inbox.reachable", inbox=f"s3://{inbox}/in/", s3_path_style=True)
    assert scanned["inbox.reachable"].status == "pass", scanned
    assert "Contents" not in s3.list_objects_v2(Bucket=inbox, Prefix="in/.leases/")


def test_text_report_is_one_line_per_check_with_the_fix(volume: Volume, tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_doctor(settings(tmp_path, tmp_path / "no-volume"), as_json=False, out=out) == 1
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines[:-1]] == list(CHECK_NAMES)
    assert any(line.startswith("FAIL  volume.mounted ") and " — fix: set F5B_VOLUME" in line for line in lines)
    assert lines[-1].startswith("doctor: ") and "not ready" in lines[-1]


def test_cli_prints_one_json_document_and_exits_1_on_failure(tmp_path: Path) -> None:
    out = run_cli("doctor", "--json", "--volume", str(tmp_path / "missing"), "--model", "tiny",
                  "--inbox", str(tmp_path / "in"), "--outbox", str(tmp_path / "out"),
                  "--processing-dir", str(tmp_path / "processing"))
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is False and [c["name"] for c in report["checks"]] == list(CHECK_NAMES)
    assert all(set(c) == {"name", "status", "detail", "hint"} and c["status"] in ("pass", "warn", "fail")
               for c in report["checks"])
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["volume.mounted"]["status"] == "fail"
    assert by_name["synthesis.smoke"]["detail"].startswith("skipped: ")


def test_cli_exits_0_when_ready(volume: Volume, tmp_path: Path) -> None:
    cache = str(volume.root / "cache")
    out = run_cli("doctor", "--json", "--volume", str(volume.root), "--model", "tiny",
                  "--inbox", str(tmp_path / "in"), "--outbox", str(tmp_path / "out"),
                  "--processing-dir", str(tmp_path / "processing"),
                  env={"RUNPOD_POD_ID": "", **{name: cache for name in CACHE_VARIABLES}})
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["ok"] is True, out.stdout
    assert {c["name"] for c in report["checks"] if c["status"] != "pass"} <= may_warn()


# --- each failure, with its fix -----------------------------------------------------------------------


def test_missing_volume_fails_and_skips_what_needs_it(tmp_path: Path) -> None:
    missing = tmp_path / "not-mounted"
    found = check(tmp_path, missing, "volume.mounted", "volume.writable", "volume.separate_disk", "volume.free_space",
                  "model.complete", "model.checksums", environ={"RUNPOD_POD_ID": "pod1"})
    mounted = found["volume.mounted"]
    assert mounted.status == "fail" and str(missing) in mounted.detail
    assert "attach a network volume" in mounted.hint and "F5B_VOLUME" in mounted.hint
    for name in ("volume.writable", "volume.separate_disk", "volume.free_space", "model.complete"):
        assert (found[name].status, found[name].detail) == ("warn", "skipped: volume.mounted failed"), name
    assert found["model.checksums"].detail == "skipped: volume.mounted failed"


def test_volume_on_the_container_disk_fails_on_a_pod(tmp_path: Path) -> None:
    (tmp_path / "vol").mkdir()
    for environ, status in (({}, "warn"), ({"RUNPOD_POD_ID": "pod1"}, "fail")):
        ctx = Context(settings(tmp_path, tmp_path / "vol"), environ=environ, container_root=tmp_path)
        (found,) = run_checks(ctx, ["volume.separate_disk"])
        assert found.status == status and "same filesystem as the container disk" in found.detail


def test_wrong_checksum_fails_with_the_seed_command(volume: Volume, tmp_path: Path) -> None:
    folder = volume.model("tiny")
    text = folder.vocab.read_text()
    folder.vocab.write_text(text.replace("a", "b", 1))  # same size, other content
    found = check(tmp_path, volume, "model.complete", "model.checksums", "model.vocab", "model.weights")
    assert found["model.complete"].status == "pass"
    bad = found["model.checksums"]
    assert bad.status == "fail" and bad.detail.startswith("vocab.txt does not match SHA256SUMS")
    assert bad.hint == f"f5-batch seed --volume {volume.root} --tiny"
    assert found["model.weights"].detail == "skipped: model.checksums failed"


def test_missing_model_file_fails_with_the_seed_command(volume: Volume, tmp_path: Path) -> None:
    (volume.model("tiny").vocoder_dir / "pytorch_model.bin").unlink()
    found = check(tmp_path, volume, "model.complete", model="tiny")["model.complete"]
    assert found.status == "fail" and "lacks vocos/pytorch_model.bin" in found.detail
    assert found.hint == f"f5-batch seed --volume {volume.root} --tiny"


def test_weights_of_another_shape_fail_though_checksums_match(volume: Volume, tmp_path: Path) -> None:
    corrupt_weights(volume.model("tiny"), lambda s: s.update({BIAS: s[BIAS][:7].clone()}))
    found = check(tmp_path, volume, "model.checksums", "model.vocab", "model.weights", "synthesis.smoke")
    assert found["model.checksums"].status == "pass" and found["model.vocab"].status == "pass"
    weights = found["model.weights"]
    assert weights.status == "fail"
    assert "transformer.proj_out.bias is (7,) in the file, (100,) in the config" in weights.detail
    assert weights.hint == f"rm -rf {volume.model('tiny').path} && f5-batch seed --volume {volume.root} --tiny"
    assert found["synthesis.smoke"].detail == "skipped: model.weights failed"


def test_vocab_of_another_model_fails(volume: Volume, tmp_path: Path) -> None:
    folder = volume.model("tiny")
    with folder.vocab.open("a") as f:
        f.write("extra\n")
    folder.write_checksums()
    found = check(tmp_path, volume, "model.checksums", "model.vocab", "model.weights")
    assert found["model.checksums"].status == "pass"
    assert found["model.vocab"].status == "fail"
    assert "2546 entries but model.safetensors's text embedding has 2546 rows (expected 2547" in \
        found["model.vocab"].detail
    assert found["model.weights"].status == "fail" and "text_embed" in found["model.weights"].detail


def test_broken_vocoder_fails(volume: Volume, tmp_path: Path) -> None:
    folder = volume.model("tiny")
    (folder.vocoder_dir / "pytorch_model.bin").write_bytes(b"not a torch file")
    folder.write_checksums()
    found = check(tmp_path, volume, "model.checksums", "vocoder.loadable")["vocoder.loadable"]
    assert found.status == "fail" and found.detail.startswith("vocos/ cannot be loaded")


def test_full_disks_fail_against_their_thresholds(volume: Volume, tmp_path: Path) -> None:
    found = check(tmp_path, volume, "processing.free_space", processing_min_free_bytes=10**18)
    full = found["processing.free_space"]
    assert full.status == "fail" and "F5B_PROCESSING_MIN_FREE_BYTES" in full.detail
    assert "F5B_PROCESSING_DIR" in full.hint
    # An unseeded volume must hold the model the seed script would fetch (1.3 GB for F5TTS_v1_Base).
    ctx = Context(settings(tmp_path, volume, model="F5TTS_v1_Base"), environ={}, free_space=lambda path: 10**9)
    (space,) = run_checks(ctx, ["volume.free_space"])
    assert space.status == "fail" and "not enough free space" in space.detail
    assert "grow the network volume" in space.hint
    ctx = Context(settings(tmp_path, volume, model="F5TTS_v1_Base"), environ={}, free_space=lambda path: 10**10)
    assert run_checks(ctx, ["volume.free_space"])[0].status == "pass"


def test_caches_pointed_off_the_volume_fail(volume: Volume, tmp_path: Path) -> None:
    for name in ("XDG_CACHE_HOME", "HF_HOME"):  # HF_HOME: the worker overrides it, but nothing else in the pod does
        found = check(tmp_path, volume, "caches.on_volume", environ={name: "/root/.cache"})["caches.on_volume"]
        assert found.status == "fail" and f"{name}=/root/.cache" in found.detail and "Dockerfile" in found.hint
    on_volume = {name: str(volume.root / "cache" / name.lower()) for name in CACHE_VARIABLES}
    assert check(tmp_path, volume, "caches.on_volume", environ=on_volume)["caches.on_volume"].status == "pass"
    (volume.root / "cache").symlink_to(tmp_path)  # a cache folder that leads to the container disk
    found = check(tmp_path, volume, "caches.on_volume")["caches.on_volume"]
    assert found.status == "fail" and "HF_HOME=" in found.detail


def test_cuda_requested_without_a_gpu_fails(volume: Volume, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible here")
    found = check(tmp_path, volume, "accelerator", "synthesis.smoke", device="cuda")
    assert found["accelerator"].status == "fail" and "F5B_DEVICE=cuda" in found["accelerator"].detail
    smoke = found["synthesis.smoke"]
    assert smoke.status == "fail" and smoke.detail.startswith("ModelError: device 'cuda' requested")


def test_smoke_test_without_the_example_voice_uses_a_tone(volume: Volume, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """An image installs the package without manifests/: the smoke test must not depend on the example voice."""
    from processor.checks import model

    monkeypatch.setattr(model, "EXAMPLE_VOICE", tmp_path / "absent.wav")
    smoke = check(tmp_path, volume, "synthesis.smoke", device="cpu")["synthesis.smoke"]
    assert smoke.status == "pass" and "at 4 steps" in smoke.detail, smoke


def test_unreachable_endpoint_fails_fast_and_names_it(aws: Endpoint, volume: Volume, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    started = time.monotonic()
    found = check(tmp_path, volume, "inbox.reachable", "outbox.reachable", "queue.reachable", "queue.redrive",
                  inbox="s3://inbox-bucket/in/", outbox="s3://outbox-bucket/out/", s3_path_style=True,
                  queue="http://127.0.0.1:9/123456789012/jobs")
    assert time.monotonic() - started < 20
    for name in ("inbox.reachable", "outbox.reachable", "queue.reachable"):
        assert found[name].status == "fail" and "cannot reach http://127.0.0.1:9" in found[name].detail, found[name]
        assert "AWS_ENDPOINT_URL" in found[name].hint
    assert found["queue.redrive"].detail == "skipped: queue.reachable failed"


def test_missing_region_and_credentials_are_named(aws: Endpoint, volume: Volume, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    found = check(tmp_path, volume, "outbox.reachable", "queue.reachable", outbox="s3://outbox-bucket/out/",
                  queue=f"{aws.url}/123456789012/jobs")
    assert found["queue.reachable"].detail.endswith("no AWS region configured")
    assert "AWS_REGION" in found["queue.reachable"].hint
    assert "no usable AWS credentials" in found["outbox.reachable"].detail
    assert "AWS_ACCESS_KEY_ID" in found["outbox.reachable"].hint


def test_missing_bucket_and_overlap_fail(aws: Endpoint, volume: Volume, tmp_path: Path) -> None:
    bucket = unique_name("b")
    aws.client("s3").create_bucket(Bucket=bucket)
    found = check(tmp_path, volume, "outbox.not_in_inbox", "outbox.reachable", inbox=f"s3://{bucket}/in/",
                  outbox=f"s3://{unique_name('gone')}/out/", s3_path_style=True)
    assert found["outbox.reachable"].status == "fail" and "NoSuchBucket" in found["outbox.reachable"].detail
    assert "create" in found["outbox.reachable"].hint
    loop = check(tmp_path, volume, "outbox.not_in_inbox", inbox=f"s3://{bucket}/in/", outbox=f"s3://{bucket}/in/out/")
    assert loop["outbox.not_in_inbox"].status == "fail" and "overlaps" in loop["outbox.not_in_inbox"].detail


def test_queue_without_redrive_policy_fails(aws: Endpoint, volume: Volume, tmp_path: Path) -> None:
    sqs = aws.client("sqs")
    name = unique_name("jobs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    found = check(tmp_path, volume, "queue.reachable", "queue.redrive", queue=url)
    assert found["queue.reachable"].status == "pass"
    redrive = found["queue.redrive"]
    assert redrive.status == "fail" and "no RedrivePolicy" in redrive.detail
    assert redrive.hint.startswith(f"f5-batch bootstrap --queue-name {name}")
    dlq = sqs.get_queue_attributes(QueueUrl=sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"],
                                   AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq, "maxReceiveCount": "1"})})
    once = check(tmp_path, volume, "queue.redrive", queue=url)["queue.redrive"]
    assert once.status == "warn" and "--max-receive-count" in once.hint


def test_config_that_describes_no_model_fails(volume: Volume, tmp_path: Path) -> None:
    volume.model("tiny").config_file.write_text("{}")
    volume.model("tiny").write_checksums()
    found = check(tmp_path, volume, "model.checksums", "model.weights")["model.weights"]
    assert found.status == "fail" and "unsupported backbone" in found.detail and found.hint.startswith("rm -rf")


def test_a_check_that_crashes_is_a_failure_not_a_traceback(volume: Volume, tmp_path: Path) -> None:
    volume.model("tiny").vocab.write_bytes(b"\xff\xfe not utf-8\n")
    volume.model("tiny").write_checksums()
    found = check(tmp_path, volume, "model.checksums", "model.vocab")["model.vocab"]
    assert found.status == "fail" and found.detail.startswith("UnicodeDecodeError")
    assert "docs/troubleshooting.md#modelvocab" in found.hint


# --- documentation -----------------------------------------------------------------------------------


def test_troubleshooting_explains_every_check() -> None:
    text = (REPO / "docs" / "troubleshooting.md").read_text()
    missing = [name for name in CHECK_NAMES if f"### `{name}`" not in text]
    assert not missing, f"docs/troubleshooting.md has no section for {missing}"
