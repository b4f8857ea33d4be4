"""A manifest's script as synthesis work, and the speech of that work joined into one wave.

Each spoken piece of the script (`processor/script.py`: voice tags and breaks) is one
synthesis request, in its voice and at its voice's speed, chunked as any text is;
its chunks join the batches of every request of the same model. The first piece
is seeded with the manifest's seed, so a manifest of one voice with no tags and no
breaks is one request exactly as before; piece i > 0 with a seed derived from
(seed, i), so that no two pieces draw the same noise. The pieces are joined with
the manifest's cross-fade, and with exact digital silence where a pause stands
between them (no fade into or out of a pause).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from processor.audio import VoicePrompt, remove_silence
from processor.manifest import Manifest
from processor.script import Pause, Spoken
from processor.synthesis import Retake, Speech, SynthesisRequest, join


@dataclass(frozen=True)
class Work:
    """What a job asks of the synthesizer at once: requests of one model, `indexes` saying which of the job's
    requests they are (a listening check's retakes are some of them again)."""

    model: str
    requests: tuple[SynthesisRequest, ...]
    indexes: tuple[int, ...]

    def retake(self, takes: Mapping[int, Sequence[Retake]], time_limit_s: float | None) -> Work:
        """Some chunks of some of the job's requests again: `takes` by request index."""
        chosen = sorted(takes)
        return Work(self.model, tuple(self.requests[i].retake(takes[i], time_limit_s) for i in chosen),
                    tuple(chosen))


def piece_seed(seed: int, index: int) -> int:
    """The seed of the script's spoken piece `index`: the manifest's for the first, derived for the others."""
    if index == 0:
        return seed
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def spoken(manifest: Manifest) -> list[Spoken]:
    return [piece for piece in manifest.script if isinstance(piece, Spoken)]


def work_for(manifest: Manifest, voices: Mapping[str, VoicePrompt], model: str, time_limit_s: float | None) -> Work:
    """One request per spoken piece, in script order."""
    specs = manifest.voice_specs()
    pieces = spoken(manifest)
    # A text that is one piece is given as it is: chunking counts its leading and trailing spaces, as before.
    whole = manifest.voices is None and len(manifest.script) == 1
    requests = []
    for index, piece in enumerate(pieces):
        base = SynthesisRequest.for_manifest(manifest, voices[piece.voice], time_limit_s=time_limit_s)
        requests.append(replace(base, text=manifest.text if whole else piece.text, speed=specs[piece.voice].speed,
                                seed=piece_seed(manifest.effective_seed, index)))
    return Work(model, tuple(requests), tuple(range(len(requests))))


@dataclass(frozen=True)
class Segment:
    """Where a spoken piece landed in the joined audio, for the job's log."""

    index: int
    voice: str
    start_s: float
    seconds: float


@dataclass(frozen=True)
class Span:
    """A text chunk in the joined audio: samples [start, end) at the model's rate. Where two chunks are
    cross-faded, the boundary is the fade's midpoint; a pause belongs to neither."""

    text: str
    voice: str
    start: int
    end: int


@dataclass
class Joined:
    """The joined audio of a script, built piece by piece and pause by pause."""

    rate: int
    cross_fade_s: float
    parts: list[np.ndarray] = field(default_factory=list)
    run: list[np.ndarray] = field(default_factory=list)  # pieces cross-faded together since the last pause
    segments: list[Segment] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    before: int = 0  # samples in `parts`
    run_len: int = 0  # samples the current run joins to

    def pause(self, seconds: float) -> None:
        self._close_run()
        self.parts.append(np.zeros(round(seconds * self.rate), dtype=np.float32))
        self.before += len(self.parts[-1])

    def piece(self, index: int, voice: str, texts: Sequence[str], wave: np.ndarray, bounds: list[int]) -> None:
        """A piece's wave, its chunks' `texts` between `bounds` (len(texts) + 1 sample positions in the wave)."""
        overlap = _overlap(self.run_len, len(wave), self.cross_fade_s, self.rate) if self.run else 0
        start = self.before + self.run_len - overlap
        self.segments.append(Segment(index, voice, start / self.rate, len(wave) / self.rate))
        first = start + bounds[0] + overlap // 2
        if self.run and self.spans:  # the piece before ends where this one's fade-in is half done
            self.spans[-1] = replace(self.spans[-1], end=first)
        edges = [first, *(start + bound for bound in bounds[1:])]
        self.spans.extend(Span(text, voice, a, b) for text, a, b in zip(texts, edges, edges[1:], strict=False))
        self.run.append(wave)
        self.run_len += len(wave) - overlap

    def wave(self) -> np.ndarray:
        self._close_run()
        return np.concatenate(self.parts) if self.parts else np.zeros(0, dtype=np.float32)

    def _close_run(self) -> None:
        if self.run:
            self.parts.append(self.run[0] if len(self.run) == 1 else join(self.run, self.cross_fade_s, self.rate))
            self.before, self.run, self.run_len = self.before + self.run_len, [], 0


def join_script(manifest: Manifest, speeches: Sequence[Speech], scratch: Path) -> Joined:
    """The pieces' speech as one wave: each piece's chunks cross-faded (silences removed if its voice asks), runs
    of pieces cross-faded together, pauses as zeros between runs; where each piece and each chunk landed."""
    specs = manifest.voice_specs()
    joined = Joined(speeches[0].sample_rate, manifest.cross_fade)
    said = iter(enumerate(zip(spoken(manifest), speeches, strict=True)))
    for piece in manifest.script:
        if isinstance(piece, Pause):
            joined.pause(piece.seconds)
            continue
        index, (words, speech) = next(said)
        wave = speech.joined(manifest.cross_fade)
        bounds = chunk_bounds([len(w) for w in speech.rendered.waves], manifest.cross_fade, joined.rate)
        if specs[words.voice].remove_silence:
            wave, kept = remove_silence(wave, joined.rate, scratch)
            bounds = [kept.map(bound) for bound in bounds]
        joined.piece(index, words.voice, speech.rendered.texts, wave, bounds)
    return joined


def chunk_bounds(lengths: Sequence[int], cross_fade_s: float, rate: int) -> list[int]:
    """Where the chunks of one joined wave meet: 0, each fade's midpoint, the end (as `synthesis.join` joins)."""
    bounds, joined = [0], lengths[0]
    for length in lengths[1:]:
        overlap = _overlap(joined, length, cross_fade_s, rate)
        bounds.append(joined - overlap + overlap // 2)
        joined += length - overlap
    return [*bounds, joined]


def _overlap(joined: int, length: int, seconds: float, rate: int) -> int:
    """Samples a wave overlaps what is joined before it, as `synthesis.cross_fade` computes them."""
    if seconds <= 0:
        return 0
    return max(min(int(seconds * rate), joined, length), 0)
