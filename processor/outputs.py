"""A job's files in the outbox, in the order consumers rely on: its products, then `log.jsonl`, then `result.json`.

`result.json` is written last and once (a conditional write): when it exists the
job is over, and a second run of the same job never replaces it. Each product is
one function in `PRODUCTS` that writes its file and returns its fields of the
result: adding an output file is one function here plus its field in `Result`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from processor.encoding import decoded_rate, encode
from processor.logs import JobLog
from processor.loudness import LoudnessValue, normalize, target_for
from processor.manifest import Manifest
from processor.results import LoudnessReport, Result, TextSegment
from processor.storage import Outbox
from processor.subtitles import Timed, subtitle_files

RESULT = "result.json"
LOG = "log.jsonl"


def job_key(job_id: str, name: str) -> str:
    return f"{job_id}/{name}"


@dataclass(frozen=True)
class Audio:
    """A job's finished speech, in the format its manifest asks for: its samples at the model's rate, and what
    the file is to be (the manifest's bitrate and sample_rate; None: the format's default, the model's rate)."""

    wave: np.ndarray
    sample_rate: int
    format: str
    bitrate_kbps: int | None = None
    output_rate: int | None = None
    loudness: LoudnessReport | None = None  # what `loudness.normalize` did to `wave`, when the job had a target
    segments: tuple[TextSegment, ...] = ()  # where each text chunk falls, in seconds
    subtitles: tuple[str, ...] = ()  # subtitle formats to write from the segments: srt, vtt

    @property
    def duration_s(self) -> float:
        return len(self.wave) / self.sample_rate


def audio_for(manifest: Manifest, wave: np.ndarray, sample_rate: int, fleet_loudness: LoudnessValue | None = None,
              segments: tuple[TextSegment, ...] = ()) -> Audio:
    """The job's joined speech as its manifest wants it written: at its loudness target (its own, else
    F5B_LOUDNESS's), in its format, bitrate and rate. Without a target the samples are untouched."""
    target = target_for(manifest.loudness, manifest.true_peak_db, fleet_loudness)
    report = None
    if target is not None:
        wave, report = normalize(wave, sample_rate, target.lufs, target.ceiling_dbtp)
    return Audio(wave, sample_rate, manifest.format, manifest.bitrate, manifest.sample_rate, report, segments,
                 tuple(manifest.subtitles))


Product = Callable[[Outbox, str, Audio], dict[str, Any]]


def audio_file(outbox: Outbox, job_id: str, audio: Audio) -> dict[str, Any]:
    """The audio file, encoded here on the output thread (resampled first if the manifest asks)."""
    key = job_key(job_id, f"audio.{audio.format}")
    data, encoding = encode(audio.wave, audio.sample_rate, audio.format, audio.bitrate_kbps, audio.output_rate)
    outbox.put(key, data)
    return {"audio": key, "audio_uri": outbox.uri(key), "sample_rate": decoded_rate(audio.format, encoding.sample_rate),
            "duration_s": round(audio.duration_s, 6), "encoding": encoding, "loudness": audio.loudness}


def timeline(outbox: Outbox, job_id: str, audio: Audio) -> dict[str, Any]:
    """No file: the segments go into result.json."""
    return {"segments": list(audio.segments)} if audio.segments else {}


def subtitles(outbox: Outbox, job_id: str, audio: Audio) -> dict[str, Any]:
    """`<id>/audio.srt`, `<id>/audio.vtt` from the segments, when the manifest asks for them."""
    if not audio.subtitles:
        return {}
    timed = [Timed(s.text, s.start, s.end, s.voice) for s in audio.segments]
    return subtitle_files(outbox, job_id, timed, audio.subtitles)


PRODUCTS: tuple[Product, ...] = (audio_file, timeline, subtitles)


@dataclass(frozen=True)
class Outputs:
    outbox: Outbox

    def finished(self, job_id: str) -> bool:
        """A result exists: the job is over, whoever ran it."""
        return self.outbox.exists(job_key(job_id, RESULT))

    def write(self, job_id: str, audio: Audio) -> dict[str, Any]:
        """Every product of a job, in order; their fields of the result."""
        fields: dict[str, Any] = {}
        for product in PRODUCTS:
            fields.update(product(self.outbox, job_id, audio))
        return fields

    def write_record(self, log: JobLog, result: Result) -> None:
        """The log, then the result (consumers wait for result.json), unless a result exists already."""
        result_key = job_key(result.id, RESULT)
        if self.outbox.exists(result_key):
            log.event("duplicate", "a result for this id exists already; kept it", logging.WARNING)
            return
        log.event("finished", f"job {result.status}", status=result.status, seconds=round(result.timings.total, 3))
        self.outbox.put(job_key(result.id, LOG), log.jsonl())
        if not self.outbox.put_if_absent(result_key, result.json_bytes()):
            log.event("duplicate", "another run wrote this id's result first; kept it", logging.WARNING)
