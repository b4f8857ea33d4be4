"""Memory bombs: inputs small on the wire that a careless reader turns into gigabytes, through the real worker CLI.

The test measures the peak resident memory of the worker's process tree (ffmpeg included) over a `--once` run of
one normal manifest from an S3 inbox, then over a `--once` run of every hostile case below between two normal
manifests, and holds the second within MEMORY_MARGIN of the first. Before the bounds each case alone peaked at
1.15 to 1.6 GB against 0.7 GB for a normal job: ffmpeg's whole output was held in memory before its length was
looked at, and an S3 manifest was read whole before its size was.

- A FLAC file of 330 KB whose header claims 10 s but holds 30 minutes: decoding stops at MAX_VOICE_S with
  `voice_too_long`, whatever the header says.
- Eight channels at 96 kHz for 200 s, its header honest: the samples pass MAX_DECODED_BYTES at 75 s, long before the
  time limit: `voice_too_large`.
- A 7 MB, 30-minute MP3 (MP3 declares no exact length): `voice_too_long` once 300 s are decoded.
- A 512 MiB manifest object: `invalid_manifest` from its Content-Length, its body never read.
"""

from __future__ import annotations

import http.client
import io
import json
import struct
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import soundfile as sf

from processor.audio import MAX_VOICE_S
from processor.errors import InvalidManifest, ManifestNotFound, ProcessingDiskFull
from processor.manifest import MAX_MANIFEST_BYTES
from processor.retries import CallRetry
from processor.storage.s3 import read_manifest
from processor.storage.volume import Volume

from tests.support.aws import Endpoint, unique_name, voice_bucket
from tests.support.manifests import manifest
from tests.support.memory import MEMORY_MARGIN, Measured, run_cli_measuring
from tests.support.paths import VOICE
from tests.support.results import read_s3_result
from tests.support.scenarios import put_manifests
from tests.support.workers import worker_env

NORMAL = manifest("Hello there.", nfe_step=2)
RETRY = CallRetry(max_attempts=2, initial_s=0.05, max_s=0.1, total_s=5)


def within_margin(hostile: Measured, normal: Measured) -> str:
    return (f"hostile run peaked at {hostile.peak_mb:.0f} MB, a normal one at {normal.peak_mb:.0f} MB "
            f"(margin {MEMORY_MARGIN / 2**20:.0f} MB)")


# --- hostile voices and a hostile manifest, in one run ---------------------------------------------------------


def flac_of_silence(path: Path, seconds: int, rate: int, channels: int, claimed_s: int | None = None) -> None:
    """`seconds` of silence (which FLAC stores in almost nothing); with `claimed_s`, its STREAMINFO header is
    patched to claim that length instead, as a hand-edited or broken file can."""
    block = np.zeros((rate * 10, channels), np.int16)
    with sf.SoundFile(path, "w", rate, channels, "PCM_16", format="FLAC") as flac:
        for _ in range(seconds // 10):
            flac.write(block)
    if claimed_s is not None:
        data = bytearray(path.read_bytes())
        # STREAMINFO, the first metadata block, at byte 8: its bytes 10-17 end with the 36-bit total sample count.
        packed = int.from_bytes(data[18:26], "big")
        data[18:26] = ((packed & ~(2**36 - 1)) | claimed_s * rate).to_bytes(8, "big")
        data[26:42] = bytes(16)  # MD5 of the samples: "unknown"
        path.write_bytes(bytes(data))
        assert sf.info(str(path)).duration == claimed_s


def half_hour_mp3(path: Path) -> None:
    """30 minutes of a stereo 48 kHz tone at 32 kbit/s: a minute encoded once, its frames repeated."""
    minute = path.with_suffix(".minute.mp3")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=220:sample_rate=48000:"
                    "duration=60", "-ac", "2", "-b:a", "32k", "-write_xing", "0", "-id3v2_version", "0", str(minute)],
                   check=True)
    path.write_bytes(minute.read_bytes() * 30)
    minute.unlink()


HOSTILE_VOICES: dict[str, tuple[str, str, str]] = {  # manifest -> (voice file, code, fragment of the message)
    "lying-header-flac": ("lying.flac", "voice_too_long", f"longer than {MAX_VOICE_S} s (decoding stopped there; "
                                                          "its header says 10.0 s)"),
    "eight-channels-96k-flac": ("wide.flac", "voice_too_large", "8 channels at 96000 Hz"),
    "half-hour-mp3": ("long.mp3", "voice_too_long", f"longer than {MAX_VOICE_S} s"),
}


def write_hostile_voices(folder: Path) -> list[Path]:
    flac_of_silence(folder / "lying.flac", 30 * 60, 48_000, 2, claimed_s=10)
    flac_of_silence(folder / "wide.flac", 200, 96_000, 8)  # an honest header: 200 s, under the time limit
    half_hour_mp3(folder / "long.mp3")
    voices = [folder / voice for voice, _, _ in HOSTILE_VOICES.values()]
    assert all(p.stat().st_size < 8 * 2**20 for p in voices)
    return voices


# Read whole, it must cost more than the margin whenever it is read (while the model loads, or while the normal
# manifest before it synthesizes); past that, size only costs upload time.
HUGE_MANIFEST_BYTES = 512 * 2**20


def put_huge_manifest(s3: Any, bucket: str, key: str, folder: Path) -> None:
    """HUGE_MANIFEST_BYTES of zeros, streamed from a sparse file with one PUT to a presigned URL (which leaves
    the payload unsigned: hashing it would be most of the test's time)."""
    path = folder / "huge.json"
    with path.open("wb") as f:
        f.truncate(HUGE_MANIFEST_BYTES)
    url = urlsplit(s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600))
    connection = http.client.HTTPConnection(url.netloc, timeout=120)
    try:
        with path.open("rb") as body:
            connection.request("PUT", f"{url.path}?{url.query}", body=body,
                               headers={"Content-Length": str(HUGE_MANIFEST_BYTES)})
        response = connection.getresponse()
        assert response.status == 200, response.read()[:500]
    finally:
        connection.close()
        path.unlink()


def s3_run(endpoint: Endpoint, bucket: str, volume: Volume, tmp: Path) -> Measured:
    env = worker_env(endpoint.url, endpoint, volume, tmp)
    return run_cli_measuring("run", "--inbox", f"s3://{bucket}/inbox/", "--outbox", f"s3://{bucket}/outbox/",
                             "--once", env=env, timeout=180)


def test_hostile_voices_and_manifests_cost_no_more_memory_than_a_normal_job(
    moto_endpoint: Endpoint, tmp_path: Path, tiny_volume: Volume
) -> None:
    s3 = moto_endpoint.client("s3")
    bucket = voice_bucket(s3, "bombs")
    put_manifests(s3, bucket, {"normal": NORMAL})
    normal = s3_run(moto_endpoint, bucket, tiny_volume, tmp_path / "normal")
    assert normal.returncode == 0, normal.output[-3000:]

    for voice in write_hostile_voices(tmp_path):
        s3.upload_file(str(voice), bucket, f"voices/{voice.name}")
    hostile_bodies = {name: manifest("Hello there.", nfe_step=2, voice=f"voices/{voice}")
                      for name, (voice, _, _) in HOSTILE_VOICES.items()}
    others = ("a-normal-before-them", "zz-normal-after-them")
    put_manifests(s3, bucket, {**hostile_bodies, **dict.fromkeys(others, NORMAL)})
    put_huge_manifest(s3, bucket, "inbox/huge.json", tmp_path)
    try:
        hostile = s3_run(moto_endpoint, bucket, tiny_volume, tmp_path / "hostile")
    finally:
        s3.delete_object(Bucket=bucket, Key="inbox/huge.json")  # moto holds it in memory for the whole session

    assert hostile.returncode == 0, hostile.output[-3000:]
    assert hostile.peak_rss <= normal.peak_rss + MEMORY_MARGIN, within_margin(hostile, normal)
    for name, (_, code, fragment) in HOSTILE_VOICES.items():
        error = read_s3_result(s3, bucket, name, "outbox/")["error"]
        assert error["code"] == code and fragment in error["message"], (name, error)
    error = read_s3_result(s3, bucket, "huge", "outbox/")["error"]
    assert error == {"code": "invalid_manifest",
                     "message": f"manifest is {HUGE_MANIFEST_BYTES} bytes; the limit is {MAX_MANIFEST_BYTES}"}, error
    for name in ("normal", *others):
        assert read_s3_result(s3, bucket, name, "outbox/")["status"] == "succeeded", name
    processing = tmp_path / "hostile" / "processing"
    left = [p for p in processing.rglob("*") if p.is_file() and p.parent.name != "voice-cache"]
    assert left == [], "the decoded samples are removed with the job"


# --- the same bounds, one level down -----------------------------------------------------------------------


class EndlessManifest(BaseHTTPRequestHandler):
    """An S3 lookalike that answers any GET with a chunked body (no Content-Length) that never ends on its own."""

    sent = 0

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"x" * 65536
        try:
            for _ in range(1024):  # 64 MiB at most, should the client read on
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                type(self).sent += len(chunk)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client hung up: what it should do

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def endless_server() -> Iterator[Endpoint]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EndlessManifest)
    EndlessManifest.sent = 0
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Endpoint(url=f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


def test_a_manifest_body_without_a_length_is_read_no_further_than_the_limit(endless_server: Endpoint) -> None:
    with pytest.raises(InvalidManifest, match=f"manifest is more than {MAX_MANIFEST_BYTES} bytes"):
        read_manifest(endless_server.client("s3"), RETRY, "bucket", "inbox/endless.json")
    assert EndlessManifest.sent < 16 * 2**20, EndlessManifest.sent


def test_a_manifest_within_the_limit_is_read_whole_and_a_deleted_one_is_not_found(moto_endpoint: Endpoint) -> None:
    s3 = moto_endpoint.client("s3")
    bucket = unique_name("manifests")
    s3.create_bucket(Bucket=bucket)
    body = json.dumps(NORMAL).encode().ljust(MAX_MANIFEST_BYTES)
    s3.put_object(Bucket=bucket, Key="inbox/full.json", Body=body)
    assert read_manifest(s3, RETRY, bucket, "inbox/full.json") == body
    with pytest.raises(ManifestNotFound):
        read_manifest(s3, RETRY, bucket, "inbox/gone.json")


def formats(folder: Path) -> list[Path]:
    """A second of the example voice in each way pydub picks ffmpeg's output: 16-bit, 32-bit for 24-bit and
    float sources, 16-bit for MP3's float, unsigned 8-bit; and a FLAC named .wav, which pydub's reader refuses."""
    speech, rate = sf.read(VOICE, dtype="float32", frames=22050)
    stereo = np.stack([speech, speech * 0.5], axis=1)
    writes = {"16-bit.flac": (speech, "PCM_16"), "24-bit-stereo.flac": (stereo, "PCM_24"),
              "vorbis.ogg": (stereo, "VORBIS"), "speech.mp3": (speech, "MPEG_LAYER_III"),
              "float.wav": (stereo, "FLOAT"), "8-bit.w64": (speech, "PCM_U8")}
    for name, (samples, subtype) in writes.items():
        sf.write(folder / name, samples, rate, subtype=subtype)
    (folder / "flac-named.wav").write_bytes((folder / "16-bit.flac").read_bytes())
    return sorted(folder.iterdir())


def test_bounded_decoding_gives_the_samples_pydub_gives(tmp_path: Path) -> None:
    from pydub import AudioSegment

    from processor.decoding import decode

    (tmp_path / "clips").mkdir()
    (tmp_path / "scratch").mkdir()
    for clip in formats(tmp_path / "clips"):
        ours, theirs = decode(clip, tmp_path / "scratch"), AudioSegment.from_file(str(clip))
        assert (ours.channels, ours.frame_rate, ours.sample_width) == (theirs.channels, theirs.frame_rate,
                                                                        theirs.sample_width), clip.name
        assert ours.raw_data == theirs.raw_data, clip.name
    assert list((tmp_path / "scratch").iterdir()) == []


def test_a_processing_folder_that_fills_up_while_decoding_is_not_the_clip_s_fault() -> None:
    from processor.decoding import Probe, stream_pcm

    header = b"RIFF\xff\xff\xff\xffWAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
    wav = io.BytesIO(header + b"data\xff\xff\xff\xff" + bytes(2 * 2**20))
    with pytest.raises(ProcessingDiskFull, match="filled up while decoding"):
        stream_pcm(wav, Path("/dev/full"), Probe("pcm_s16le", 10.0))  # every write to /dev/full is ENOSPC
