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
from dataclasses import dataclass, field
from pathlib import Path

from processor.audio import VoicePrompt, prepare_voice
from processor.manifest import Manifest
from processor.storage import VoiceSource

# Bump when prepare_voice changes what it produces: keys of the old preparation then never match.
PREPARATION_VERSION = 1


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
    """A manifest's voice, ready for the model: prepared once per clip version and transcript."""

    source: VoiceSource
    prepared: PreparedVoices

    def prepare(self, manifest: Manifest, scratch: Path) -> VoicePrompt:
        identity = self.source.identity(manifest.voice)
        key = voice_key(identity, manifest.voice_text)
        voice = self.prepared.get(key)
        if voice is None:
            path = self.source.fetch(manifest.voice, scratch, identity)  # the version the key names
            voice = prepare_voice(path, manifest.voice_text, scratch, key=key)
            self.prepared.add(voice)
        return voice
