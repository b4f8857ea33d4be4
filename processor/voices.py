"""Voices ready for the model, kept in memory so a voice shared by many jobs is prepared once.

A prepared voice is keyed by the clip's identity (its S3 ETag or file size and
mtime, so a changed clip is never served stale), its transcript, and the
version of the preparation steps. The synthesizer keys its reference features
by the same key.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from processor.audio import Reference, VoicePrompt, prepare_reference
from processor.errors import VoiceUnreadable
from processor.manifest import Manifest
from processor.script import Spoken
from processor.storage import VoiceSource
from processor.transcription import Transcriber
from processor.transcripts import required

Timed = Callable[[str], AbstractContextManager[object]]


class Wanted(Protocol):
    """A voice as a manifest asks for it: the manifest itself, or one of its voices table (`VoiceSpec`)."""

    @property
    def voice(self) -> str: ...
    @property
    def voice_text(self) -> str | None: ...
    @property
    def voice_language(self) -> str | None: ...


def untimed(stage: str) -> AbstractContextManager[object]:
    return nullcontext()

# Bump when prepare_voice changes what it produces: keys of the old preparation then never match.
PREPARATION_VERSION = 2  # 2: a clip whose speech is cut is refused or transcribed again


def voice_key(identity: str, voice_text: str) -> str:
    return hashlib.sha256(f"{PREPARATION_VERSION}\0{identity}\0{voice_text}".encode()).hexdigest()


@dataclass
class PreparedVoices:
    """A least-recently-used set of prepared voices, capped in bytes of samples."""

    max_bytes: int = 256 * 2**20
    hits: int = 0
    misses: int = 0
    _entries: OrderedDict[str, VoicePrompt] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: str) -> VoicePrompt | None:
        with self._lock:
            voice = self._entries.get(key)
            if voice is None:
                self.misses += 1
                return None
            self.hits += 1
            self._entries.move_to_end(key)
            return voice

    def add(self, voice: VoicePrompt) -> None:
        if not voice.key or voice.samples.nbytes > self.max_bytes:
            return
        with self._lock:
            self._entries[voice.key] = voice
            self._entries.move_to_end(voice.key)
            while sum(v.samples.nbytes for v in self._entries.values()) > self.max_bytes:
                self._entries.popitem(last=False)


@dataclass
class Voices:
    """A manifest's voice, ready for the model: prepared once per clip version and transcript.

    The transcript is the manifest's, else the sidecar next to the clip, else the ASR model's (`transcriber`, None
    when none is seeded), which also transcribes the part kept of a clip too long for the model. A prepared voice
    is cached with its transcript, so a voice shared by many jobs is transcribed once.
    """

    source: VoiceSource
    prepared: PreparedVoices
    transcriber: Transcriber | None = None

    def prepare_all(self, manifest: Manifest, scratch: Path, timed: Timed = untimed) -> dict[str, VoicePrompt]:
        """The manifest's own voice (`main`) and every voice its script speaks in, each fetched to a folder of its
        own in the scratch folder: the same checks, caches and transcript rules for all."""
        used = {"main", *(piece.voice for piece in manifest.script if isinstance(piece, Spoken))}
        prepared = {}
        for name, spec in manifest.voice_specs().items():
            if name in used:
                folder = scratch if name == "main" else scratch / "voices" / name
                folder.mkdir(parents=True, exist_ok=True)
                prepared[name] = self.prepare(spec, folder, timed)
        return prepared

    def prepare(self, manifest: Wanted, scratch: Path, timed: Timed = untimed) -> VoicePrompt:
        """`timed("asr")` times the transcription, when there is one."""
        identity = self.source.identity(manifest.voice)
        text, source = manifest.voice_text, "manifest"
        if text is None:
            text, source = self.source.transcript(manifest.voice), "sidecar"
        key = voice_key(identity, text if text is not None else f"\0asr\0{manifest.voice_language or ''}")
        voice = self.prepared.get(key)
        if voice is None:
            path = self.source.fetch(manifest.voice, scratch, identity)  # the version the key names
            voice = self._with_transcript(prepare_reference(path, scratch), manifest, text, source, key, timed)
            self.prepared.add(voice)
        return voice

    def _with_transcript(self, reference: Reference, manifest: Wanted, text: str | None, source: str,
                         key: str, timed: Timed) -> VoicePrompt:
        if text is not None and reference.clipped_from_s is None:
            return reference.prompt(text, key, source)
        if self.transcriber is None:
            raise required(manifest.voice) if text is None else reference.clipped(manifest.voice)
        mono = reference.samples.mean(axis=0)
        with timed("asr"):
            heard = self.transcriber.transcribe(mono, reference.sample_rate, manifest.voice_language).strip()
        if not heard:
            raise VoiceUnreadable(f"voice {manifest.voice!r}: the ASR model heard no words in it")
        return reference.prompt(heard, key, "asr")
