"""Expected figures computed with F5-TTS's own functions, as an oracle independent of the worker's code."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any


@cache
def upstream() -> Any:
    import f5_tts.infer.utils_infer as ui

    return ui


def expected_single_chunk_seconds(voice: Path, voice_text: str, text: str, speed: float) -> float:
    """Output length of a one-chunk job: F5-TTS's duration estimate minus the reference frames."""
    import torchaudio

    ui = upstream()
    ref_path, ref_text = ui.preprocess_ref_audio_text(str(voice), voice_text, show_info=lambda *a: None)
    audio, sr = torchaudio.load(ref_path)
    assert len(ui.chunk_text(text, max_chars=10_000)) == 1
    resampled = torchaudio.transforms.Resample(sr, 24000)(audio.mean(0, keepdim=True))
    ref_frames = resampled.shape[-1] // 256
    ref_text = ref_text + " "  # infer_batch_process appends a space after a one-byte final char
    local_speed = 0.3 if len(text.encode()) < 10 else speed
    frames = ref_frames + int(ref_frames / len(ref_text.encode()) * len(text.encode()) / local_speed)
    return (frames - ref_frames) * 256 / 24000
