"""Full disks, through the real CLI, each on a tmpfs of the worker's own (`tests/support/disks.py`).

Decisions these tests pin down:
- An outbox that cannot take a job's files is the worker's trouble, not the job's: nothing half-written stays
  (no `.part`), no result is written, the manifest goes back to the inbox (not to `.done/`), and so do the ones
  held and not started; the worker takes no more work and exits 1 with one line saying why and what to do. A
  run with room then does every job: nothing is lost.
- A job whose result cannot be written, after its audio was, goes back to the inbox the same way: its claim is
  never left behind. One whose result can never be written (the outbox refuses it for good) is logged with the
  code and taken off the inbox, so that it is not run forever; the worker carries on.
- The processing folder filling up during a job (the voice's copy or S3 download) is `processing_disk_full`,
  transient like too little free space before the job: with F5B_MAX_ATTEMPTS=1 a failed result at once; the
  other jobs are fine and the worker exits 0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from processor.errors import OutboxUnwritable, ProcessingDiskFull
from processor.storage.local import LocalOutbox
from processor.storage.volume import Volume
from processor.storage.workdir import WorkDir

from tests.support.aws import Endpoint, unique_name
from tests.support.disks import require_small_disks, run_cli_on_small_disk
from tests.support.fault_proxy import FaultProxy
from tests.support.manifests import inbox_with_voice, manifest, write_manifest
from tests.support.paths import VOICE
from tests.support.results import all_results
from tests.support.workers import local_worker_args, run_cli

FAST = {"nfe_step": 2}
TOO_SMALL_FOR_AUDIO = 16 * 1024  # the tiny model's audio of "Hello there." is over 40 KB
PROCESSING_DISK = 2 * 2**20  # the example voice and its prepared copy fit; BIG_VOICE_S does not
BIG_VOICE_S = 70  # 16-bit mono at 24 kHz: 3.4 MB


def log_events(output: str) -> list[dict[str, Any]]:
    """The worker's JSON log lines."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def stages_of(output: str, job: str) -> list[str]:
    return [e["stage"] for e in log_events(output) if e.get("job") == job]


def manifests_in(inbox: Path, folder: str = "") -> list[str]:
    return sorted(p.name.partition("@")[0].removesuffix(".json") for p in (inbox / folder).glob("*.json"))


def no_part_files(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob("*.part")]


def test_a_full_outbox_gives_every_manifest_back_and_a_run_with_room_does_them_all(
    tmp_path: Path, tiny_volume: Volume
) -> None:
    require_small_disks()
    inbox = inbox_with_voice(tmp_path)
    names = ["full-1", "full-2", "full-3", "full-4"]
    for name in names:
        write_manifest(inbox, name, manifest("Hello there.", **FAST))
    args = local_worker_args(tmp_path, tiny_volume, "--once")

    out, left = run_cli_on_small_disk(tmp_path / "outbox", TOO_SMALL_FOR_AUDIO, *args)

    output = out.stdout + out.stderr
    assert out.returncode == 1, output[-3000:]
    assert no_part_files(left, tmp_path) == [], "a failed write leaves nothing half-written"
    assert list(left.rglob("result.json")) == []
    assert manifests_in(inbox) == names, "every manifest is back in the inbox"
    assert manifests_in(inbox, ".claims") == [] and manifests_in(inbox, ".done") == []
    for name in names:  # one line each says why it went back; one never claimed has none
        stages = stages_of(output, name)
        assert stages.count("released") == stages.count("claimed") <= 1, output[-3000:]
    written = [e for e in log_events(output) if e["stage"] == "released" and e.get("code") == "outbox_unwritable"]
    assert written and all("No space left on device" in e["msg"] for e in written)
    said = [line for line in output.splitlines() if "the outbox cannot be written" in line]
    assert len(said) == 1 and "free space on the outbox disk" in said[0], output[-3000:]

    again = run_cli(*args)

    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    results = all_results(tmp_path / "outbox")
    assert {name: results[name]["status"] for name in names} == dict.fromkeys(names, "succeeded")
    assert manifests_in(inbox, ".done") == names and manifests_in(inbox) == []


def test_a_result_that_cannot_be_written_gives_its_manifest_back(tmp_path: Path, tiny_volume: Volume) -> None:
    """Its audio is written; its log cannot be (a folder stands where it goes): the claim is not left behind.

    In watch mode, the worker stops at once: the idle limit is there only so that a worker that carried on
    (as it did) ends too.
    """
    inbox = inbox_with_voice(tmp_path)
    write_manifest(inbox, "no-log", manifest("Hello there.", **FAST))
    blocker = tmp_path / "outbox" / "no-log" / "log.jsonl"
    (blocker / "in-the-way").mkdir(parents=True)

    out = run_cli(*local_worker_args(tmp_path, tiny_volume, "--exit-when-idle", "20"))

    output = out.stdout + out.stderr
    assert out.returncode == 1, output[-3000:]
    assert manifests_in(inbox) == ["no-log"] and manifests_in(inbox, ".claims") == []
    assert manifests_in(inbox, ".done") == []
    assert not (tmp_path / "outbox" / "no-log" / "result.json").exists()
    assert no_part_files(tmp_path) == []
    released = [e for e in log_events(output) if e.get("job") == "no-log" and e["stage"] == "released"]
    assert len(released) == 1 and released[0]["code"] == "outbox_unwritable", output[-3000:]


def test_a_result_the_outbox_refuses_for_good_is_logged_and_not_run_again(
    tmp_path: Path, tiny_volume: Volume, moto_endpoint: Endpoint
) -> None:
    """An S3 outbox that lets the start-up probe in but refuses the job's keys (AccessDenied, as a policy granting
    another prefix would): the audio fails with storage_error, and so does its result.

    The job is over without a result: `--once` exits 1, its last line counting it left, and no traceback."""
    inbox = inbox_with_voice(tmp_path)
    write_manifest(inbox, "nowhere", manifest("Hello there.", **FAST))
    bucket = unique_name("refusing")
    moto_endpoint.client("s3").create_bucket(Bucket=bucket)
    refused = f"/{bucket}/out/nowhere/"
    with FaultProxy(moto_endpoint.url, rate=1.0, kinds=["http403"],
                    only=lambda req: req.method == "PUT" and req.path.startswith(refused)) as proxy:
        args = local_worker_args(tmp_path, tiny_volume, "--once", "--outbox", f"s3://{bucket}/out/", "--s3-path-style")
        out = run_cli(*args, env={**Endpoint(url=proxy.url).env(inherit=False), "F5B_AWS_MAX_ATTEMPTS": "1"})

    output = out.stdout + out.stderr
    assert out.returncode == 1, output[-3000:]
    assert "Traceback" not in output and proxy.stats["http403"] >= 2
    assert manifests_in(inbox, ".done") == ["nowhere"] and manifests_in(inbox, ".claims") == []
    unrecorded = [e for e in log_events(output) if e.get("job") == "nowhere" and e["stage"] == "unrecorded"]
    assert len(unrecorded) == 1 and unrecorded[0]["code"] == "storage_error", output[-3000:]
    ended = log_events(out.stdout)[-1]
    assert ended["msg"] == "inbox drained: 0 succeeded, 0 failed, 1 left (not finished: see the lines above)"
    assert (ended["level"], ended["succeeded"], ended["failed"], ended["left"]) == ("warning", 0, 0, 1)


def big_voice(path: Path) -> None:
    rate = 24000
    t = np.arange(BIG_VOICE_S * rate) / rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * 220 * t), rate, subtype="PCM_16")
    assert path.stat().st_size > PROCESSING_DISK


def processing_disk_run(tmp_path: Path, tiny_volume: Volume, voices: dict[str, str],
                        env: dict[str, str]) -> tuple[str, dict[str, dict[str, Any]]]:
    """The jobs `voices` names, on a processing folder too small for the big voice; the output and the results.

    The big voice's job comes first, alone in the worker, so that nothing else is in the folder as it fills up.
    """
    inbox = tmp_path / "inbox"
    for name, voice in voices.items():
        write_manifest(inbox, name, manifest("Hello there.", voice=voice, **FAST))
    env = {"F5B_PROCESSING_MIN_FREE_BYTES": "0", "F5B_MAX_ATTEMPTS": "1", **env}
    out, left = run_cli_on_small_disk(tmp_path / "processing", PROCESSING_DISK,
                                      *local_worker_args(tmp_path, tiny_volume, "--once"), env=env)
    output = out.stdout + out.stderr
    assert out.returncode == 0, output[-3000:]
    assert manifests_in(inbox, ".done") == sorted(voices) and manifests_in(inbox, ".claims") == []
    # health.json lies at the top; the S3 voice cache in the worker's folder outlives the jobs by design
    scratch = [p for p in left.rglob("*") if p.is_file() and p.parent != left and p.parent.name != "voice-cache"]
    assert scratch == [], "every job's scratch folder is removed, the filled one too"
    return output, all_results(tmp_path / "outbox")


def test_a_processing_folder_that_fills_up_is_processing_disk_full(tmp_path: Path, tiny_volume: Volume) -> None:
    require_small_disks()
    big_voice(inbox_with_voice(tmp_path) / "voices" / "big.wav")

    _, results = processing_disk_run(tmp_path, tiny_volume, {
        "a-big": "voices/big.wav", "b-fine": "voices/narrator.wav", "c-fine": "voices/narrator.wav"}, {})

    assert results["a-big"]["error"]["code"] == "processing_disk_full", results["a-big"]["error"]
    assert "filled up" in results["a-big"]["error"]["message"]
    assert results["b-fine"]["status"] == results["c-fine"]["status"] == "succeeded"


def test_a_voice_download_that_fills_the_processing_folder_is_processing_disk_full(
    tmp_path: Path, tiny_volume: Volume, moto_endpoint: Endpoint
) -> None:
    require_small_disks()
    bucket = unique_name("voices")
    s3 = moto_endpoint.client("s3")
    s3.create_bucket(Bucket=bucket)
    big_voice(tmp_path / "big.wav")
    s3.put_object(Bucket=bucket, Key="big.wav", Body=(tmp_path / "big.wav").read_bytes())
    s3.put_object(Bucket=bucket, Key="narrator.wav", Body=VOICE.read_bytes())
    env = {**moto_endpoint.env(inherit=False), "F5B_VOICE_BUCKETS": bucket, "F5B_S3_PATH_STYLE": "true"}

    _, results = processing_disk_run(tmp_path, tiny_volume, {
        "a-big": f"s3://{bucket}/big.wav", "b-fine": f"s3://{bucket}/narrator.wav"}, env)

    assert results["a-big"]["error"]["code"] == "processing_disk_full", results["a-big"]["error"]
    assert results["b-fine"]["status"] == "succeeded", results["b-fine"]["error"]



# --- the same, one level down ----------------------------------------------------------------------


def test_a_local_outbox_write_the_os_refuses_is_outbox_unwritable_and_leaves_no_part(tmp_path: Path) -> None:
    outbox = LocalOutbox(tmp_path / "outbox")
    (tmp_path / "outbox" / "job" / "audio.wav" / "in-the-way").mkdir(parents=True)
    (tmp_path / "outbox" / "job" / "result.json").mkdir()
    with pytest.raises(OutboxUnwritable, match="audio.wav"):
        outbox.put("job/audio.wav", b"RIFF")
    assert outbox.put_if_absent("job/result.json", b"{}") is False, "an existing name is a duplicate, not trouble"
    assert no_part_files(tmp_path) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_full_disk_in_a_scratch_folder_is_processing_disk_full(tmp_path: Path) -> None:
    workdir = WorkDir(tmp_path / "processing", "host.1")
    workdir.prepare()
    with pytest.raises(ProcessingDiskFull, match="filled up"), workdir.scratch("job", 0), \
            open("/dev/full", "wb", buffering=0) as full:  # every write: ENOSPC
        full.write(b"voice")
    with pytest.raises(FileNotFoundError), workdir.scratch("job", 0) as scratch:
        (scratch / "missing").read_bytes()  # any other OS error stays what it is
    assert list(workdir.mine.iterdir()) == []
