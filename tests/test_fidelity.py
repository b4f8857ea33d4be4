"""The worker's audio equals F5-TTS's own inference for the same model files, voice, text, seed and options.

The reference side is F5-TTS 1.1.22's public inference functions, called the way
`F5TTS.infer` and `F5TTS.export_wav` call them (seed_everything, then
preprocess_ref_audio_text, infer_process, soundfile.write, and
remove_silence_for_generated_wav when asked). `F5TTS` itself is not constructed
because it only builds the architectures of its bundled configs, not the tiny one.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from processor.storage.volume import ModelFolder, Volume

from tests.support.manifests import manifest, write_manifest
from tests.support.oracle import upstream
from tests.support.paths import VOICE
from tests.support.results import read_result


class _OneThread(ThreadPoolExecutor):
    """infer_batch_process samples chunks in threads that share the global RNG; with several
    threads the order of their noise draws is up to the scheduler, so upstream itself is not
    reproducible for multi-chunk texts. One thread makes it deterministic without changing any
    computation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(max_workers=1)


@pytest.fixture(scope="module")
def f5_tts_reference(tiny_model: ModelFolder, monkeypatch_module: pytest.MonkeyPatch) -> Any:
    from f5_tts.model import DiT
    from f5_tts.model.utils import seed_everything

    ui = upstream()
    monkeypatch_module.setattr(ui, "ThreadPoolExecutor", _OneThread)
    config = tiny_model.config()
    model = ui.load_model(DiT, config["arch"], str(tiny_model.weights), vocab_file=str(tiny_model.vocab), device="cpu")
    vocoder = ui.load_vocoder(is_local=True, local_path=str(tiny_model.vocoder_dir), device="cpu")

    def infer(voice: Path, data: dict[str, Any], seed: int, out: Path) -> Path:
        seed_everything(seed)
        ref_file, ref_text = ui.preprocess_ref_audio_text(str(voice), data["voice_text"], show_info=lambda *a: None)
        wav, sr, _ = ui.infer_process(
            ref_file, ref_text, data["text"], model, vocoder, show_info=lambda *a: None, progress=None,
            nfe_step=data.get("nfe_step", 32), cfg_strength=data.get("cfg_strength", 2.0),
            sway_sampling_coef=data.get("sway_sampling_coef", -1.0), speed=data.get("speed", 1.0),
            cross_fade_duration=data.get("cross_fade", 0.15), device="cpu",
        )
        sf.write(str(out), wav, sr)
        if data.get("remove_silence"):
            ui.remove_silence_for_generated_wav(str(out))
        return out

    return infer


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _voices(folder: Path) -> dict[str, Path]:
    """The example voice, plus a quiet 44.1 kHz stereo one and an MP3 one (other decode/resample paths)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(VOICE, folder / "narrator.wav")
    samples, rate = sf.read(VOICE, dtype="float32")
    upsampled = np.repeat(samples, 2)
    stereo = np.stack([upsampled * 0.3, upsampled * 0.2], axis=1)
    sf.write(folder / "quiet-stereo.wav", stereo, rate * 2, subtype="PCM_16")
    sf.write(folder / "narrator.mp3", samples, rate, format="MP3")
    return {p.name: p for p in folder.iterdir()}


CASES: dict[str, dict[str, Any]] = {
    "defaults": manifest("Hello from the batch worker. It speaks like F5-TTS does."),
    "options": manifest("Different settings, same audio.", nfe_step=8, cfg_strength=1.5,
                        sway_sampling_coef=-0.5, speed=1.2, seed=99),
    "chunks": manifest(" ".join(f"Sentence number {i} is here to make the text longer than one chunk."
                                for i in range(8)), nfe_step=4, cross_fade=0.25, seed=5),
    "short": manifest("Hi.", nfe_step=6),
    "quiet-stereo": manifest("A quiet stereo voice at forty-four kilohertz.", voice="voices/quiet-stereo.wav",
                             nfe_step=6),
    "mp3-voice": manifest("An MP3 voice clip.", voice="voices/narrator.mp3", nfe_step=6),
    "silence-removed": manifest("Long silences are removed from this one.", remove_silence=True, nfe_step=6),
}


@pytest.fixture(scope="module")
def worker_outputs(tmp_path_factory: pytest.TempPathFactory, tiny_volume: Volume) -> Path:
    from processor.app import build_worker
    from processor.settings import Settings

    root = tmp_path_factory.mktemp("fidelity")
    _voices(root / "inbox" / "voices")
    for name, data in CASES.items():
        write_manifest(root / "inbox", name, data)
    settings = Settings(inbox=str(root / "inbox"), outbox=str(root / "outbox"), volume=tiny_volume.root,
                        model="tiny", processing_dir=root / "processing", device="cpu")
    assert build_worker(settings).run(once=True) == len(CASES)
    return root


@pytest.mark.parametrize("name", CASES)
def test_worker_audio_equals_f5_tts_inference(name: str, worker_outputs: Path, f5_tts_reference: Any) -> None:
    result = read_result(worker_outputs / "outbox", name)
    assert result["status"] == "succeeded", result["error"]
    data = CASES[name]
    voice = worker_outputs / "inbox" / data["voice"]
    theirs_path = f5_tts_reference(voice, data, result["seed"], worker_outputs / f"{name}.f5-tts.wav")
    ours, our_rate = sf.read(worker_outputs / "outbox" / result["audio"], dtype="int16")
    theirs, their_rate = sf.read(theirs_path, dtype="int16")
    assert our_rate == their_rate == 24000
    assert len(ours) == len(theirs)
    difference = np.abs(ours.astype(np.int32) - theirs.astype(np.int32)).max()
    assert difference <= 1, f"{name}: samples differ by up to {difference} 16-bit steps"
    assert np.abs(theirs).max() > 100, "the comparison is over real signal, not silence"


def test_different_seeds_give_different_audio(worker_outputs: Path, f5_tts_reference: Any) -> None:
    """Guards the test above: the comparison can tell two outputs apart."""
    data = CASES["defaults"]
    result = read_result(worker_outputs / "outbox", "defaults")
    other = f5_tts_reference(VOICE, data, result["seed"] + 1, worker_outputs / "other-seed.wav")
    ours, _ = sf.read(worker_outputs / "outbox" / result["audio"], dtype="int16")
    theirs, _ = sf.read(other, dtype="int16")
    assert np.abs(ours.astype(np.int32) - theirs.astype(np.int32)).max() > 100


def test_same_manifest_twice_gives_identical_audio(worker_outputs: Path, tiny_volume: Volume) -> None:
    from processor.app import build_worker
    from processor.settings import Settings

    again = worker_outputs / "again"
    _voices(again / "inbox" / "voices")
    write_manifest(again / "inbox", "defaults", CASES["defaults"])
    settings = Settings(inbox=str(again / "inbox"), outbox=str(again / "outbox"), volume=tiny_volume.root,
                        model="tiny", processing_dir=again / "processing", device="cpu")
    build_worker(settings).run(once=True)
    first = (worker_outputs / "outbox" / "defaults" / "audio.wav").read_bytes()
    assert (again / "outbox" / "defaults" / "audio.wav").read_bytes() == first
