"""A script of several voices and pauses equals F5-TTS's own inference piece by piece, joined as the worker defines.

The oracle is F5-TTS 1.1.22's functions, as infer_cli calls them for each voice-tagged piece
(preprocess_ref_audio_text per voice, then infer_process with that voice's speed), each piece after
seed_everything(its seed) (`processor.rendering.piece_seed`: infer_cli takes no seed, so the seed of each piece is
the worker's definition). The pieces are then joined the way issue 14 defines it: cross-faded as F5-TTS joins the
chunks of one text, and with exact silence where a break stands.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from processor.rendering import piece_seed
from processor.script import Pause, Spoken, parse_script
from processor.storage.volume import ModelFolder, Volume
from processor.synthesis import join

from tests.support.manifests import inbox_with_voice, write_manifest
from tests.support.oracle import upstream
from tests.support.paths import VOICE, VOICE_TEXT
from tests.test_fidelity import _OneThread

QUIET = "The quick brown fox jumps over the lazy dog."
SCRIPT = {
    "text": 'The narrator opens the story. [quiet] "And I answer, slowly." <break time="400ms"/> [main] The end '
            'comes after a pause, in the voice that began.',
    "voice": "voices/narrator.wav", "voice_text": VOICE_TEXT, "nfe_step": 4, "seed": 11, "cross_fade": 0.2,
    "voices": {"quiet": {"voice": "voices/quiet.wav", "voice_text": QUIET, "speed": 0.85}},
}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory, tiny_volume: Volume) -> Path:
    from processor.app import build_worker
    from processor.settings import Settings

    root = tmp_path_factory.mktemp("fidelity-scripts")
    inbox = inbox_with_voice(root)
    samples, rate = sf.read(VOICE, dtype="float32")
    sf.write(inbox / "voices" / "quiet.wav", samples[: rate * 4] * 0.3, rate, subtype="PCM_16")
    write_manifest(inbox, "script", SCRIPT)
    settings = Settings(inbox=str(inbox), outbox=str(root / "outbox"), volume=tiny_volume.root, model="tiny",
                        processing_dir=root / "processing", device="cpu")
    assert build_worker(settings).run(once=True) == 1
    return root


def oracle(tiny_model: ModelFolder, root: Path, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    from f5_tts.model import DiT
    from f5_tts.model.utils import seed_everything

    ui = upstream()
    monkeypatch.setattr(ui, "ThreadPoolExecutor", _OneThread)
    config = tiny_model.config()
    model = ui.load_model(DiT, config["arch"], str(tiny_model.weights), vocab_file=str(tiny_model.vocab), device="cpu")
    vocoder = ui.load_vocoder(is_local=True, local_path=str(tiny_model.vocoder_dir), device="cpu")
    voices = {"main": (root / "inbox" / "voices" / "narrator.wav", VOICE_TEXT, 1.0),
              "quiet": (root / "inbox" / "voices" / "quiet.wav", QUIET, 0.85)}
    parts: list[np.ndarray] = []
    run: list[np.ndarray] = []
    index = 0
    for piece in parse_script(SCRIPT["text"], SCRIPT["voices"]):
        if isinstance(piece, Pause):
            parts.append(join(run, SCRIPT["cross_fade"], 24000))
            parts.append(np.zeros(round(piece.seconds * 24000), dtype=np.float32))
            run = []
            continue
        assert isinstance(piece, Spoken)
        clip, text, speed = voices[piece.voice]
        seed_everything(piece_seed(SCRIPT["seed"], index))
        ref_file, ref_text = ui.preprocess_ref_audio_text(str(clip), text, show_info=lambda *a: None)
        wave, _, _ = ui.infer_process(ref_file, ref_text, piece.text, model, vocoder, show_info=lambda *a: None,
                                      progress=None, nfe_step=SCRIPT["nfe_step"], speed=speed,
                                      cross_fade_duration=SCRIPT["cross_fade"], device="cpu")
        run.append(np.asarray(wave, dtype=np.float32))
        index += 1
    parts.append(join(run, SCRIPT["cross_fade"], 24000))
    return np.concatenate(parts)


def test_a_script_equals_f5_tts_piece_by_piece_joined_with_its_cross_fade_and_pauses(
        outputs: Path, tiny_model: ModelFolder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ours, rate = sf.read(outputs / "outbox" / "script" / "audio.wav", dtype="int16")
    expected = oracle(tiny_model, outputs, monkeypatch)
    sf.write(tmp_path / "oracle.wav", expected, 24000, subtype="PCM_16")
    theirs, _ = sf.read(tmp_path / "oracle.wav", dtype="int16")
    assert rate == 24000 and len(ours) == len(theirs)
    difference = np.abs(ours.astype(np.int32) - theirs.astype(np.int32)).max()
    assert difference <= 1, f"samples differ by up to {difference} 16-bit steps"
    assert np.abs(theirs).max() > 100


def test_the_oracle_can_tell_another_piece_seed_apart(outputs: Path, tiny_model: ModelFolder,
                                                      monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Guards the test above: the same oracle, every piece seeded with the manifest's seed, differs."""
    monkeypatch.setattr("tests.test_fidelity_scripts.piece_seed", lambda seed, index: seed)
    other = oracle(tiny_model, outputs, monkeypatch)
    ours, _ = sf.read(outputs / "outbox" / "script" / "audio.wav", dtype="float32")
    assert len(other) == len(ours) and np.abs(other - ours).max() > 0.01
