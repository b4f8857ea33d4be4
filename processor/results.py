"""The result record: the last file written for a job, and the one consumers wait for."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from processor.logs import redact

RESULT_VERSION = 1


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable error code, e.g. voice_not_found.")
    message: str = Field(description="What went wrong and what to do about it.")


class Timings(BaseModel):
    """Seconds, summed over the job's attempts. `total` is at least the sum of the others (docs/outbox.md)."""

    fetch: float = Field(default=0.0, description="Preparing the voice clip: download (or cache), decode, check.")
    synth: float = Field(default=0.0, description="The synthesis calls that served the job (each a whole batch's "
                                                  "call), and removing silences.")
    write: float = Field(default=0.0, description="Writing the audio file.")
    asr: float = Field(default=0.0, description="Transcribing with the ASR model: the voice clip (0 when its "
                                                "transcript came from the manifest or a sidecar, or was cached), "
                                                "and the listening check's takes.")
    queued: float = Field(default=0.0, description="Waiting inside the worker: for the intake thread after the "
                                                   "claim, for the synthesizer (batches ahead of it), for the output "
                                                   "thread after it.")
    total: float = Field(default=0.0, description="From the claim to the start of writing log.jsonl and result.json.")

class ChunkCheck(BaseModel):
    index: int = Field(description="The chunk's place in the text, from 0.")
    text: str = Field(description="The chunk's text.")
    transcript: str = Field(description="What the ASR model heard in its kept take.")
    wer: float
    cer: float
    takes: int = Field(description="Takes synthesized of this chunk (1: the first was kept without a retake).")
    seed: int = Field(description="Seed of the kept take (see docs/outbox.md for how takes are seeded).")


class CheckReport(BaseModel):
    """The listening check: the audio as the ASR model heard it, scored against the text."""

    passed: bool | None = Field(description="Every chunk within max_wer; null when the manifest gave no max_wer.")
    max_wer: float | None
    metric: Literal["wer", "cer"] = Field(description="What max_wer is compared with: cer for languages written "
                                                      "without spaces, else wer.")
    wer: float = Field(description="Word error rate of the whole text (the kept takes).")
    cer: float = Field(description="Character error rate of the whole text (the kept takes).")
    transcript: str = Field(description="The kept takes' transcripts, in order.")
    worst_chunk: ChunkCheck
    chunks: int = Field(description="Text chunks heard.")
    retaken: int = Field(description="Chunks synthesized more than once.")
    asr_model: str


class TextSegment(BaseModel):
    """A text chunk's place in the final audio, from the join's sample positions."""

    text: str
    voice: str | None = Field(None, description="The voice that speaks it, when the manifest has a voices table.")
    start: float = Field(description="Seconds from the audio's start; a cross-fade's midpoint, or where it begins.")
    end: float = Field(description="Seconds: the next chunk's start, or where its audio ends (before a pause).")


class Encoding(BaseModel):
    """How the audio file was made: the encoder and what it was set to."""

    format: str = Field(description="The manifest's format.")
    encoder: str = Field(description="libsndfile or ffmpeg (with its encoder, e.g. libopus), and its version.")
    codec: str = Field(description="The codec, as ffprobe names it: pcm_s16le, flac, mp3, vorbis, opus or aac.")
    bitrate_kbps: int | None = Field(description="The average bitrate asked of the encoder, kbit/s; null for wav and "
                                                 "flac, and for mp3 and ogg at libsndfile's default quality.")
    sample_rate: int = Field(description="The rate of the samples encoded, Hz (an Opus file plays at 48000).")


class LoudnessReport(BaseModel):
    """The loudness target of a job, and the audio measured before and after its one gain (ITU-R BS.1770-4)."""

    target_lufs: float = Field(description="Integrated loudness asked for, LUFS.")
    true_peak_ceiling_db: float = Field(description="Highest true peak allowed, dBTP (4x oversampled).")
    before_lufs: float | None = Field(description="Integrated loudness as synthesized; null when it cannot be "
                                                  "measured (see skipped).")
    after_lufs: float | None = Field(description="Integrated loudness written.")
    before_true_peak_db: float | None = Field(description="True peak as synthesized, dBTP; null for silence.")
    after_true_peak_db: float | None = Field(description="True peak written, dBTP.")
    gain_db: float = Field(description="The one gain applied to the whole audio, dB.")
    limited_by_ceiling: bool = Field(description="The ceiling allowed less gain than the target needed: the "
                                                 "audio is quieter than the target.")
    skipped: Literal["too_short", "silent"] | None = Field(
        None, description="Why the audio was left as it was: under 0.4 s (one BS.1770 block), or silent.")


class VoiceUsed(BaseModel):
    voice: str = Field(description="The clip, as the manifest's voices table names it.")
    voice_text: str = Field(description="The transcript the model was given.")
    voice_text_source: Literal["manifest", "sidecar", "asr"]


class Result(BaseModel):
    version: int = RESULT_VERSION
    id: str
    status: Literal["succeeded", "failed"]
    audio: str | None = Field(None, description="Audio key relative to the outbox, e.g. job-1/audio.wav.")
    audio_uri: str | None = Field(None, description="Where the audio is: a path or an s3:// URI.")
    format: str | None = None
    sample_rate: int | None = Field(None, description="The rate the audio plays at, Hz.")
    duration_s: float | None = None
    seed: int | None = None
    voice_text: str | None = Field(None, description="The transcript of the voice clip the model was given.")
    voice_text_source: Literal["manifest", "sidecar", "asr"] | None = Field(
        None, description="Where that transcript came from: the manifest's voice_text, the sidecar file next to the "
        "clip, or the ASR model (which also transcribes the part kept of a clip over 12 s).")
    subtitles: list[str] | None = Field(
        None, description="Keys of the subtitle files relative to the outbox (<id>/audio.srt, <id>/audio.vtt).")
    segments: list[TextSegment] | None = Field(
        None, description="Each text chunk of the audio: its text, voice, start and end in seconds.")
    voices: dict[str, VoiceUsed] | None = Field(
        None, description="The voices table's voices the script spoke in, by name (the main voice is voice_text).")
    encoding: Encoding | None = Field(None, description="The encoder of the audio file and its settings.")
    loudness: LoudnessReport | None = Field(None, description="The loudness target and the audio measured before "
                                                             "and after, when the job had a target.")
    model: str
    check: CheckReport | None = Field(None, description="The listening check, when the job asked for one.")
    error: ErrorInfo | None = None
    attempts: int = Field(1, description="Which attempt at the job this result came from, from 1 (see the outbox doc).")
    timings: Timings = Field(default_factory=Timings)
    manifest_sha256: str
    manifest: str = Field(description="Name of the manifest that asked for this job.")
    worker: str
    finished_at: str

    def json_bytes(self) -> bytes:
        return (redact(self.model_dump_json(indent=2)) + "\n").encode("utf-8")
