"""Speech recognition: a Whisper checkpoint from the volume turns a voice clip (or a take) into text.

As F5-TTS does it (`f5_tts.infer.utils_infer.transcribe`): a transformers
"automatic-speech-recognition" pipeline, fp16 on a GPU of compute capability 7 or
more, else fp32, called with `chunk_length_s=30` and the task and language as
generate arguments. Unlike F5-TTS it reads only the volume's folder, with the hub
off, and loads on first use: a worker whose jobs never need it never pays for it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from processor.logs import logger
from processor.storage.volume import AsrFolder, Volume

ASR_RATE = 16000  # Whisper's feature extractor; the pipeline would resample, but only with torchaudio present
CHUNK_S = 30
BATCH = 16  # clips per generate call; F5-TTS uses 128 for one clip's 30 s windows, but a take is seldom over 20 s


class Transcriber(Protocol):
    """Speech to text; `model_name` is what results and logs name it by."""

    @property
    def model_name(self) -> str: ...

    def transcribe(self, samples: np.ndarray, rate: int, language: str | None = None) -> str:
        """`samples`: float32 mono at `rate` Hz; `language`: a Whisper code (`en`) or None to let it detect."""
        ...

    def transcribe_many(self, clips: Sequence[np.ndarray], rate: int, language: str | None = None) -> list[str]:
        """Several clips in batched calls: the listening check's text chunks."""
        ...

    def spelling(self) -> dict[str, str]:
        """The checkpoint's British-to-American spelling map (Whisper's normalizer.json); {} without one."""
        ...


def asr_dtype(device: str) -> Any:
    """fp16 on CUDA with compute capability 7 or more (as F5-TTS), else fp32."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        if torch.cuda.get_device_properties(torch.device(device)).major >= 7:
            return torch.float16
    return torch.float32


def resample(samples: np.ndarray, rate: int, target: int = ASR_RATE) -> np.ndarray:
    """Mono float32 at `target` Hz (linear interpolation: speech recognition needs no more)."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if rate == target or samples.size == 0:
        return samples
    count = max(1, round(samples.size * target / rate))
    positions = np.arange(count, dtype=np.float64) * (rate / target)
    return np.interp(positions, np.arange(samples.size), samples).astype(np.float32)


class WhisperTranscriber:
    """A Whisper checkpoint on the volume, loaded once, on the first call, by whichever thread asks first.

    Calls run one at a time: a transformers pipeline is not made to be called from two threads at once.
    """

    def __init__(self, folder: AsrFolder, device: str) -> None:
        self.folder = folder
        self.device = device
        self.loads = 0  # for tests and logs: must stay 1
        self._pipe: Any = None
        self._lock = threading.Lock()
        self._calls = threading.Lock()

    @property
    def model_name(self) -> str:
        return self.folder.name

    def pipeline(self) -> Any:
        with self._lock:
            if self._pipe is None:
                self._pipe = self._load()
                self.loads += 1
            return self._pipe

    def _load(self) -> Any:
        import os

        os.environ["HF_HUB_OFFLINE"] = "1"  # the folder is local; nothing may reach for the hub
        from transformers import pipeline
        from transformers.utils import logging as transformers_logging

        # The worker's log is one JSON object per line: no progress bars, and not transformers' deprecation
        # notices (Whisper's own generate triggers one on every first call).
        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()

        started = time.monotonic()
        dtype = asr_dtype(self.device)
        pipe = pipeline("automatic-speech-recognition", model=str(self.folder.path), dtype=dtype,
                        device=self.device)
        logger.info(f"ASR model {self.model_name} loaded on {self.device} in {time.monotonic() - started:.1f} s",
                    extra={"stage": "startup", "asr_model": self.model_name, "device": self.device,
                           "dtype": str(dtype)})
        return pipe

    def transcribe(self, samples: np.ndarray, rate: int, language: str | None = None) -> str:
        return self.transcribe_many([samples], rate, language)[0]

    def transcribe_many(self, clips: Sequence[np.ndarray], rate: int, language: str | None = None) -> list[str]:
        if not clips:
            return []
        pipe = self.pipeline()
        generate: dict[str, Any] = {"task": "transcribe"}
        if language:
            generate["language"] = language
        audio = [{"raw": resample(samples, rate), "sampling_rate": ASR_RATE} for samples in clips]
        with self._calls:
            results = pipe(audio, chunk_length_s=CHUNK_S, batch_size=min(BATCH, len(audio)),
                           generate_kwargs=generate, return_timestamps=False, ignore_warning=True)
        return [str(result["text"]).strip() for result in results]

    def spelling(self) -> dict[str, str]:
        file = self.folder.path / "normalizer.json"
        if not file.is_file():
            return {}
        found = json.loads(file.read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def load_transcriber(volume: Volume, name: str, device: str) -> Transcriber | None:
    """The ASR model `name` of the volume, to be loaded on first use; None when it is not seeded (files missing)."""
    folder = volume.asr(name)
    if folder.missing_files():
        return None
    volume.apply_cache_environment(offline=True)
    return WhisperTranscriber(folder, device)
