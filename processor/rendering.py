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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from processor.audio import VoicePrompt, remove_silence
from processor.manifest import Manifest
from processor.script import Pause, Spoken
from processor.synthesis import Retake, Speech, SynthesisRequest, join

SEEDS = 2**32


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
    return int.from_bytes(digest[:4], "big") % SEEDS


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


def join_script(manifest: Manifest, speeches: Sequence[Speech], scratch: Path) -> tuple[np.ndarray, list[Segment]]:
    """The pieces' speech as one wave: each piece's chunks cross-faded (silences removed if its voice asks), runs
    of pieces cross-faded together, pauses as zeros between runs; and where each piece landed."""
    rate = speeches[0].sample_rate
    specs = manifest.voice_specs()
    said = iter(enumerate(zip(spoken(manifest), speeches, strict=True)))
    out: list[np.ndarray] = []
    run: list[np.ndarray] = []
    segments: list[Segment] = []
    before = run_len = 0  # samples in `out`; samples the current run joins to
    for piece in manifest.script:
        if isinstance(piece, Pause):
            if run:
                out.append(run[0] if len(run) == 1 else join(run, manifest.cross_fade, rate))
                before, run, run_len = before + run_len, [], 0
            out.append(np.zeros(round(piece.seconds * rate), dtype=np.float32))
            before += len(out[-1])
            continue
        index, (words, speech) = next(said)
        wave = speech.joined(manifest.cross_fade)
        if specs[words.voice].remove_silence:
            wave = remove_silence(wave, rate, scratch)
        overlap = _overlap(run_len, len(wave), manifest.cross_fade, rate) if run else 0
        segments.append(Segment(index, words.voice, (before + run_len - overlap) / rate, len(wave) / rate))
        run.append(wave)
        run_len += len(wave) - overlap
    if run:
        out.append(join(run, manifest.cross_fade, rate))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32), segments


def _overlap(joined: int, length: int, seconds: float, rate: int) -> int:
    """Samples a wave overlaps what is joined before it, as `synthesis.cross_fade` computes them."""
    if seconds <= 0:
        return 0
    return max(min(int(seconds * rate), joined, length), 0)
