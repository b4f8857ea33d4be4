"""Paths that lead out: overlapping folders, symbolic links, a shared bucket, signatures hidden by percent-encoding.

Through the real CLI: start-up refuses an inbox and outbox that overlap (links resolved) or are not folders, in
one line and before the model loads; in one `--once` batch, voices that leave the inbox through a link fail with
`voice_not_allowed`, an outbox job folder that is a link gets nothing written through it (`storage_error`), an
encoded presigned signature is redacted everywhere, and the good jobs beside them succeed; with an S3 inbox and
outbox in one bucket, another job's result is not a voice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from processor.errors import StorageError
from processor.logs import REDACTED, redact
from processor.storage.local import LocalOutbox, LocalVoices, open_below
from processor.storage.s3 import under_prefix
from processor.storage.volume import Volume

from tests.support.aws import Endpoint, unique_name
from tests.support.hostile_world import SECRETS, SIGNATURES, write_escapes
from tests.support.manifests import manifest
from tests.support.paths import VOICE
from tests.support.results import read_result, read_s3_result
from tests.support.workers import local_worker_args, run_cli, worker_env

FAST = {"nfe_step": 2}


# --- start-up: where the inbox and outbox are -----------------------------------------------------------


def nested(tmp: Path) -> tuple[Path, Path]:
    return tmp / "box", tmp / "box" / "results"


def nested_the_other_way(tmp: Path) -> tuple[Path, Path]:
    return tmp / "box" / "jobs", tmp / "box"


def equal(tmp: Path) -> tuple[Path, Path]:
    return tmp / "box", tmp / "other" / ".." / "box"


def equal_through_a_link(tmp: Path) -> tuple[Path, Path]:
    (tmp / "real").mkdir()
    (tmp / "link").symlink_to(tmp / "real")
    return tmp / "link", tmp / "real"


def nested_through_a_link(tmp: Path) -> tuple[Path, Path]:
    (tmp / "real").mkdir()
    (tmp / "link").symlink_to(tmp / "real")
    return tmp / "real", tmp / "link" / "results"


def inbox_is_a_file(tmp: Path) -> tuple[Path, Path]:
    (tmp / "inbox.txt").write_text("not a folder")
    return tmp / "inbox.txt", tmp / "outbox"


def outbox_is_a_file(tmp: Path) -> tuple[Path, Path]:
    (tmp / "outbox.txt").write_text("not a folder")
    return tmp / "inbox", tmp / "outbox.txt"


def outbox_under_a_file(tmp: Path) -> tuple[Path, Path]:
    (tmp / "outbox.txt").write_text("not a folder")
    return tmp / "inbox", tmp / "outbox.txt" / "results"


LAYOUTS: dict[str, tuple[Callable[[Path], tuple[Path, Path]], str]] = {
    "nested": (nested, "overlaps"),
    "nested-the-other-way": (nested_the_other_way, "overlaps"),
    "equal": (equal, "overlaps"),
    "equal-through-a-link": (equal_through_a_link, "overlaps"),
    "nested-through-a-link": (nested_through_a_link, "overlaps"),
    "inbox-is-a-file": (inbox_is_a_file, "not a folder"),
    "outbox-is-a-file": (outbox_is_a_file, "not a folder"),
    "outbox-under-a-file": (outbox_under_a_file, "not a folder"),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_overlapping_or_non_folder_locations_are_refused_at_start_up(tmp_path: Path, layout: str) -> None:
    """Exit 2 in one line: the volume has no model, so a worker that got as far as loading it would exit 1."""
    make, says = LAYOUTS[layout]
    inbox, outbox = make(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    out = run_cli("run", "--once", "--inbox", str(inbox), "--outbox", str(outbox),
                  "--volume", str(tmp_path / "no-volume"), "--processing-dir", str(tmp_path / "processing"))
    assert (out.returncode, out.stdout) == (2, ""), out.stdout[-3000:] + out.stderr[-3000:]
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("f5-batch run: ") and says in line and "Traceback" not in line
    assert sorted(tmp_path.rglob("*")) == before, "nothing made before the refusal"


# --- one batch of local escapes ----------------------------------------------------------------------------

@dataclass
class Batch:
    root: Path
    outbox: Path
    stdout: str
    written: str  # every file the worker wrote to the outbox, as text

    def result(self, job: str) -> dict[str, Any]:
        return read_result(self.outbox, job)

    def events(self, job: str) -> list[dict[str, Any]]:
        """The worker's log lines about `job`."""
        lines = (json.loads(line) for line in self.stdout.splitlines() if line.startswith("{"))
        return [event for event in lines if event.get("job") == job]


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, tiny_volume: Volume) -> Batch:
    root = tmp_path_factory.mktemp("escapes")
    _, outbox = write_escapes(root)
    out = run_cli(*local_worker_args(root, tiny_volume, "--once"), timeout=240)
    written = "".join(p.read_text(errors="replace") for p in outbox.rglob("*") if p.is_file() and p.suffix != ".wav")
    return Batch(root, outbox, out.stdout + out.stderr, written)


@pytest.mark.parametrize("job", ["voice-link-outside", "voice-through-root-link"])
def test_a_voice_link_that_leads_out_of_the_inbox_is_not_allowed(batch: Batch, job: str) -> None:
    result = batch.result(job)
    assert result["status"] == "failed", result
    assert result["error"]["code"] == "voice_not_allowed" and "outside the inbox" in result["error"]["message"]


def test_a_fifo_voice_fails_without_blocking(batch: Batch) -> None:
    result = batch.result("voice-fifo")
    assert result["error"]["code"] == "voice_not_found" and "FIFO" in result["error"]["message"], result


def test_nothing_is_written_through_a_linked_job_folder(batch: Batch) -> None:
    assert list((batch.root / "elsewhere").iterdir()) == []
    assert (batch.outbox / "linked-job").is_symlink()
    failed = [event for event in batch.events("linked-job") if event.get("stage") == "failed"]
    assert failed and failed[0]["code"] == "storage_error", batch.events("linked-job")
    assert "symbolic link" in failed[0]["msg"]


@pytest.mark.parametrize("job", ["good", "good-alias"])
def test_the_good_jobs_of_the_batch_succeed(batch: Batch, job: str) -> None:
    result = batch.result(job)
    assert result["status"] == "succeeded", result["error"]
    assert (batch.outbox / result["audio"]).is_file() and not (batch.outbox / job).is_symlink()


def test_percent_encoded_signatures_are_redacted_in_logs_and_results(batch: Batch) -> None:
    for job in SIGNATURES:
        result = batch.result(job)
        assert result["error"]["code"] == "voice_not_found" and REDACTED in result["error"]["message"], result
    for secret in SECRETS:
        assert secret not in batch.stdout, secret
        assert secret not in batch.written, secret


@pytest.mark.parametrize(("text", "secret", "kept"), [
    ("k?X-Amz-Signature%3Dabc123def&b=1", "abc123def", "&b=1"),
    ("k%3FSignature%3dabc123def%26b%3D1", "abc123def", "%26b%3D1"),
    ("k%253FAWSAccessKeyId%253DAKIAEXAMPLE%2526b%253D1", "AKIAEXAMPLE", "%2526b%253D1"),
    ("k%25253Fx-amz-security-token%25253DTOKEN123%252526b", "TOKEN123", "%252526b"),
])
def test_redact_removes_encoded_signatures_and_keeps_what_follows(text: str, secret: str, kept: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned and cleaned.endswith(f"{REDACTED}{kept}"), cleaned


# --- a shared bucket ---------------------------------------------------------------------------------------


def test_another_job_s_result_in_a_shared_bucket_is_not_a_voice(moto_endpoint: Endpoint, tmp_path: Path,
                                                                tiny_volume: Volume) -> None:
    bucket = unique_name("shared")
    s3 = moto_endpoint.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="out/victim/audio.wav", Body=VOICE.read_bytes())  # a real clip, someone's result
    thefts = {"steal-by-key": "out/victim/audio.wav", "steal-by-url": f"s3://{bucket}/out/victim/audio.wav"}
    for job, voice in thefts.items():
        s3.put_object(Bucket=bucket, Key=f"in/{job}.json", Body=json.dumps(manifest("Hi.", voice=voice, **FAST)))
    env = worker_env(moto_endpoint.url, moto_endpoint, tiny_volume, tmp_path)
    out = run_cli("run", "--once", "--inbox", f"s3://{bucket}/in/", "--outbox", f"s3://{bucket}/out/", env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for job in thefts:
        result = read_s3_result(s3, bucket, job, "out/")
        assert result["status"] == "failed", result
        assert result["error"]["code"] == "voice_not_allowed" and "outbox" in result["error"]["message"]


# --- the same guards, one level down -----------------------------------------------------------------------


def test_an_outbox_whose_root_is_a_link_works_but_links_below_it_are_refused(tmp_path: Path) -> None:
    (tmp_path / "mounted").mkdir()
    (tmp_path / "outbox").symlink_to(tmp_path / "mounted")  # the user's choice of where the outbox lives
    outbox = LocalOutbox(tmp_path / "outbox")
    assert outbox.put_if_absent("job/result.json", b"{}") and outbox.get("job/result.json") == b"{}"
    assert (tmp_path / "mounted" / "job" / "result.json").read_bytes() == b"{}"
    (tmp_path / "mounted" / "job" / "log.jsonl").symlink_to(tmp_path / "target.txt")
    (tmp_path / "mounted" / "other").symlink_to(tmp_path)
    for write in (lambda: outbox.put("job/log.jsonl", b"x"), lambda: outbox.put_if_absent("job/log.jsonl", b"x"),
                  lambda: outbox.exists("job/log.jsonl"), lambda: outbox.put("other/audio.wav", b"x"),
                  lambda: outbox.exists("other/result.json")):
        with pytest.raises(StorageError, match="symbolic link"):
            write()
    assert not (tmp_path / "target.txt").exists() and not (tmp_path / "audio.wav").exists()


def test_a_voice_folder_swapped_for_a_link_after_the_check_is_not_followed(tmp_path: Path) -> None:
    """What `LocalVoices` copies from is reached by `open_below`: the check (`resolve`) passing earlier does not help
    a folder that became a link since."""
    inbox = tmp_path / "inbox"
    (inbox / "voices").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    assert LocalVoices(inbox, max_bytes=2**20).resolve("voices/a.wav").parent == (inbox / "voices").resolve()
    (inbox / "voices").rename(inbox / "was-voices")
    (inbox / "voices").symlink_to(tmp_path / "outside")
    os.close(open_below(inbox, ["was-voices"]))
    with pytest.raises(NotADirectoryError):
        open_below(inbox, ["voices"])


@pytest.mark.parametrize(("key", "refused"), [("out/victim/audio.wav", True), ("out//victim/a.wav", True),
                                             ("./out/victim/a.wav", True), ("/out/x", True), ("outer/a.wav", False),
                                             ("voices/out/a.wav", False)])
def test_keys_under_the_outbox_prefix_are_recognised_as_a_store_would_read_them(key: str, refused: bool) -> None:
    assert under_prefix(key, "out/") is refused
