"""A job's life, top to bottom: start reading here.

`life` is one claimed manifest from its bytes to its outcome. It is a generator:
it runs up to the synthesis request it yields (on the intake thread), receives
the speech (or the synthesis error, thrown in) from the synthesis call that
served it together with other jobs, and returns how it ended (on the output
thread). A listening check that wants a chunk again yields one more request, for
its retakes, from the output thread. The pipeline (`pipeline.py`) drives it and knows nothing else of jobs;
what happens at its end (the record, the lease) is in `outcomes.py`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from processor.audio import VoicePrompt
from processor.errors import F5BatchError
from processor.leases import HeldLease
from processor.listening import Listening
from processor.logs import JobLog
from processor.loudness import LoudnessValue
from processor.manifest import Manifest, parse_manifest, printable, safe_id
from processor.models import Models
from processor.outcomes import Attempts, Deferred, Failed, Outcome, Skipped, Succeeded
from processor.outputs import Audio, Outputs, audio_for
from processor.rendering import Work, join_script, work_for
from processor.results import CheckReport, TextSegment, Timings
from processor.storage.markers import Busy, Markers
from processor.storage.workdir import WorkDir
from processor.synthesis import Speech, check_deadline
from processor.voices import Voices

Life = Generator[Work, list[Speech], Outcome]


@dataclass(frozen=True)
class Context:
    """What every job's life uses: built once per run by the worker."""

    outputs: Outputs
    markers: Markers  # in-progress markers in the outbox: one synthesis per job, however often it is delivered
    voices: Voices
    workdir: WorkDir
    listening: Listening
    models: Models
    attempts: Attempts
    min_free_bytes: int  # F5B_PROCESSING_MIN_FREE_BYTES
    loudness: LoudnessValue | None = None  # F5B_LOUDNESS: the target of a manifest that names none


def life(job: Job, ctx: Context) -> Life:
    """One claimed manifest, from its bytes to how it ended; any failure is an outcome, never the worker's."""
    job.begin()
    try:
        manifest = job.read_manifest()
        if ctx.outputs.finished(job.id):
            return Skipped(job)
        if (busy := take_marker(job, ctx.markers)) is not None:
            return Deferred.behind(job, busy)
        check, job.model = ctx.listening.plan(manifest), ctx.models.require(manifest.model)
        with ctx.workdir.scratch(job.id, ctx.min_free_bytes) as scratch:
            with job.timed("fetch"):
                voices = ctx.voices.prepare_all(manifest, scratch, job.timed)
            job.fetched(voices)
            speeches = yield from job.synthesized(work := work_for(manifest, voices, job.model, job.time_left_s()))
            speeches = yield from ctx.listening.listen(job, check, work, speeches)  # a retake is yielded likewise
            audio = finish_audio(job, manifest, speeches, scratch, ctx.loudness)
            if ctx.outputs.finished(job.id):
                return Skipped(job, "another worker finished this job first; its result stands", "duplicate",
                               logging.WARNING)
            with job.timed("write"):
                produced = ctx.outputs.write(job.id, audio)
            job.log.event("written", "audio written", key=produced["audio"], seconds=round(job.timings.write, 3))
        return Succeeded(job, produced)
    except F5BatchError as exc:
        return ctx.attempts.after(job, exc)
    except Exception as exc:  # a bug must fail this one job, never the worker or the queue
        job.log.event("error", "unexpected error", logging.ERROR, exception=repr(exc))
        return Failed(job, F5BatchError(f"unexpected error: {exc!r}"))


def take_marker(job: Job, markers: Markers) -> Busy | None:
    """The job's in-progress marker, kept with its lease (and across its attempts); who holds it, if another does."""
    if job.held.marker is None:
        taken = markers.take(job.id)
        if isinstance(taken, Busy):
            return taken
        job.held.attach(taken)
    return None


def finish_audio(job: Job, manifest: Manifest, speeches: list[Speech], scratch: Path,
                 fleet_loudness: LoudnessValue | None) -> Audio:
    """The speech as the manifest wants it: its script's pieces joined, their silences removed if asked, at its
    loudness; where each text chunk falls."""
    joined = join_script(manifest, speeches, scratch)
    if len(joined.segments) > 1:
        for segment in joined.segments:
            job.log.event("segment", f"piece {segment.index + 1}: voice {segment.voice}", voice=segment.voice,
                          start_s=round(segment.start_s, 3), seconds=round(segment.seconds, 3))
    several = manifest.voices is not None
    timeline = tuple(TextSegment(text=span.text, voice=span.voice if several else None,
                                 start=round(span.start / joined.rate, 6), end=round(span.end / joined.rate, 6))
                     for span in joined.spans)
    audio = audio_for(manifest, joined.wave(), joined.rate, fleet_loudness, timeline)  # its loudness target too
    job.log.event("synthesized", "audio synthesized", audio_s=round(audio.duration_s, 3), batch=speeches[0].batch,
                  seconds=round(job.timings.synth, 3), rtf=round(job.timings.synth / max(audio.duration_s, 1e-9), 4))
    check_deadline(job.deadline)
    return audio


@dataclass(eq=False)
class Job:
    """One claimed manifest in this worker, across the attempts the worker makes at it."""

    held: HeldLease
    time_limit_s: float  # F5B_JOB_TIMEOUT_S: the job's own work, not its wait for a free synthesizer
    log: JobLog = field(init=False)
    attempt: int = field(init=False)
    started: float = field(default_factory=time.monotonic)  # its claim: `timings.total` counts from here
    timings: Timings = field(default_factory=Timings)
    body: bytes = b""
    manifest: Manifest | None = None
    voice: VoicePrompt | None = None  # its transcript and where that came from go into the result
    check: CheckReport | None = None  # the listening check's, when it asked for one
    voices: dict[str, VoicePrompt] = field(default_factory=dict)  # every voice its script speaks in, main too
    model: str | None = None  # the model that synthesizes it, once its manifest named one (or the default)
    deadline: float | None = None
    _begun: bool = False
    _inner: list[float] = field(default_factory=list)  # time of stages timed inside the one being timed
    _claim_said: bool = False

    def __post_init__(self) -> None:
        self.log = self.held.log
        self.attempt = self.held.lease.delivery

    @property
    def id(self) -> str:
        """The manifest's id; before it is read (or when it cannot be), a safe id made from the manifest's name."""
        return self.manifest.job_id if self.manifest else safe_id(self.held.name)

    def begin(self) -> None:
        """Its life starts: the jobs of one claim begin one after another, and the wait for that is `queued`."""
        if not self._begun:
            self._begun = True
            self.timings.queued += time.monotonic() - self.started

    def read_manifest(self) -> Manifest:
        """The manifest; read or not, the job's log then says it was claimed, under the id it keeps to its result."""
        try:
            self.body = self.held.body
            self.manifest = parse_manifest(self.body, self.held.name)
        finally:
            self.log.job = self.id
            self.say_claimed()
        self.deadline = time.monotonic() + self.time_left_s()
        return self.manifest

    def say_claimed(self) -> None:
        """The job's first line, once: after its manifest is read, so that every line carries the same id."""
        if not self._claim_said:
            self._claim_said = True
            self.log.event("claimed", f"claimed manifest {printable(self.held.name, 1024)}")

    def synthesized(self, work: Work) -> Generator[Work, list[Speech], list[Speech]]:
        """The work's speech, one per request. Until the output thread resumes the job, it waits for the
        synthesizer (batches ahead of it), is synthesized (one call), then waits for the output thread: the waits,
        less the call, are `queued`. A synthesis error is thrown in at the yield: that wait is not told apart from
        the call, and not counted."""
        ready = time.monotonic()
        speeches = yield work
        call = speeches[0]
        self.timings.queued += max(0.0, time.monotonic() - ready - call.seconds)
        self.deadline = call.started + self.time_left_s()  # the time limit counts from the call's start
        self.timings.synth += call.seconds
        return speeches

    def time_left_s(self) -> float:
        return self.time_limit_s - self.timings.fetch - self.timings.asr - self.timings.synth - self.timings.write

    def fetched(self, voices: dict[str, VoicePrompt]) -> None:
        assert self.manifest is not None
        self.voice, self.voices = voices["main"], voices
        specs = self.manifest.voice_specs()
        for name, voice in voices.items():
            said = "voice ready" if name == "main" else f"voice {name} ready"
            self.log.event("fetched", said, voice=specs[name].voice, voice_name=name,
                           voice_s=round(voice.duration_s, 3), voice_text_source=voice.text_source,
                           seconds=round(self.timings.fetch, 3))
        check_deadline(self.deadline)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the block's wall time to one stage of `timings` (attempts add up). A stage timed inside another
        (the voice's transcription inside its preparation) counts for itself only."""
        start = time.monotonic()
        self._inner.append(0.0)
        try:
            yield
        finally:
            elapsed, inner = time.monotonic() - start, self._inner.pop()
            setattr(self.timings, stage, getattr(self.timings, stage) + elapsed - inner)
            if self._inner:
                self._inner[-1] += elapsed
