"""E2-TTS models (F5-TTS's UNetT backbone): seeded from the hub's layout, with `--random` and from a fine-tune's
checkpoint, and served as DiT models are: the worker's audio equals F5-TTS's own inference with `UNetT`, a batch
equals its requests one by one, and a manifest picks one on a worker whose default is the DiT `tiny`.

The model is `tiny_e2()`: the real UNetT class, small, with random weights (`tests.support.volumes.add_tiny_e2`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from processor.app import build_worker
from processor.audio import VoicePrompt, normalize_voice_text
from processor.checks import Context
from processor.doctor import run_checks
from processor.model import LoadedModel, load_model, weights_bytes
from processor.seeding.checkpoints import CheckpointSource, Vocoder
from processor.seeding.cli import build_parser, main
from processor.seeding.random_models import TINY_E2_ARCH, wheel_vocab
from processor.seeding.request import resolve
from processor.seeding.sources import HUB_MODELS, RandomSource, f5tts_model_yaml, random_architectures
from processor.settings import Settings
from processor.storage.volume import Volume
from processor.synthesis import F5Synthesizer, SynthesisRequest

from tests.support.manifests import inbox_with_voice, manifest, write_manifest
from tests.support.oracle import upstream
from tests.support.paths import VOICE, VOICE_TEXT
from tests.support.results import read_result
from tests.support.volumes import add_tiny_e2, write_finetune
from tests.support.workers import local_settings
from tests.test_batching import assert_close, joined_batch
from tests.test_fidelity import _OneThread

E2 = "tiny-e2"
STEPS = 4
FOUR = " ".join(f"Sentence number {i} is here to make the text longer than one chunk." for i in range(4))
CASES: dict[str, dict[str, Any]] = {
    "e2-one-chunk": manifest("Hello from the batch worker.", nfe_step=STEPS, model=E2),
    "e2-chunks": manifest(FOUR, nfe_step=STEPS, cross_fade=0.25, seed=5, model=E2),
    "dit-default": manifest("The default model says this.", nfe_step=STEPS),
}
CHUNKS = {"e2-one-chunk": 1, "e2-chunks": 2}


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory, tiny_volume: Volume) -> Volume:
    """The suite's volume (the DiT `tiny`) with the tiny E2 beside it."""
    volume = Volume(tmp_path_factory.mktemp("e2") / "volume")
    shutil.copytree(tiny_volume.root, volume.root)
    add_tiny_e2(volume, E2)
    return volume


@pytest.fixture(scope="module")
def worker_run(tmp_path_factory: pytest.TempPathFactory, volume: Volume) -> Path:
    """One worker whose default model is `tiny`, with two manifests for the E2 and one for the default."""
    root = tmp_path_factory.mktemp("e2-worker")
    inbox = inbox_with_voice(root)
    for name, data in CASES.items():
        write_manifest(inbox, name, data)
    assert build_worker(local_settings(root, volume)).run(once=True) == len(CASES)
    return root


@pytest.fixture(scope="module")
def f5_tts_e2(volume: Volume) -> Iterator[Any]:
    """F5-TTS's own inference with the E2 model's files, built as `utils_infer.load_model(UNetT, arch, ...)`, called
    as tests/test_fidelity.py calls it; it also says into how many chunks F5-TTS split the text."""
    from f5_tts.model import UNetT
    from f5_tts.model.utils import seed_everything

    ui = upstream()
    folder = volume.model(E2)
    model = ui.load_model(UNetT, folder.config()["arch"], str(folder.weights), vocab_file=str(folder.vocab),
                          device="cpu")
    vocoder = ui.load_vocoder(is_local=True, local_path=str(folder.vocoder_dir), device="cpu")
    chunk_text = ui.chunk_text
    chunks: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> list[str]:
        found: list[str] = chunk_text(*args, **kwargs)
        chunks.append(len(found))
        return found

    def infer(data: dict[str, Any], seed: int, out: Path) -> tuple[Path, int]:
        seed_everything(seed)
        ref_file, ref_text = ui.preprocess_ref_audio_text(str(VOICE), data["voice_text"], show_info=lambda *a: None)
        wav, sr, _ = ui.infer_process(
            ref_file, ref_text, data["text"], model, vocoder, show_info=lambda *a: None, progress=None,
            nfe_step=data["nfe_step"], cfg_strength=2.0, sway_sampling_coef=-1.0, speed=1.0,
            cross_fade_duration=data.get("cross_fade", 0.15), device="cpu",
        )
        sf.write(str(out), wav, sr)
        return out, chunks[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ui, "ThreadPoolExecutor", _OneThread)
        patch.setattr(ui, "chunk_text", counted)
        yield infer


@pytest.mark.parametrize("name", CHUNKS)
def test_e2_audio_equals_f5_tts_inference_with_unett(name: str, worker_run: Path, f5_tts_e2: Any) -> None:
    result = read_result(worker_run / "outbox", name)
    assert result["status"] == "succeeded" and result["model"] == E2, result
    theirs_path, chunks = f5_tts_e2(CASES[name], result["seed"], worker_run / f"{name}.f5-tts.wav")
    assert chunks == CHUNKS[name]
    ours, our_rate = sf.read(worker_run / "outbox" / result["audio"], dtype="int16")
    theirs, their_rate = sf.read(theirs_path, dtype="int16")
    assert our_rate == their_rate == 24000
    assert len(ours) == len(theirs)
    difference = np.abs(ours.astype(np.int32) - theirs.astype(np.int32)).max()
    assert difference <= 1, f"{name}: samples differ by up to {difference} 16-bit steps"
    assert np.abs(theirs).max() > 100, "the comparison is over real signal, not silence"


def test_a_manifest_picks_the_e2_model_beside_the_worker_s_default(worker_run: Path) -> None:
    models = {name: read_result(worker_run / "outbox", name) for name in CASES}
    assert all(result["status"] == "succeeded" for result in models.values()), models
    assert {name: result["model"] for name, result in models.items()} == {
        "e2-one-chunk": E2, "e2-chunks": E2, "dit-default": "tiny"}


@pytest.fixture(scope="module")
def e2_model(volume: Volume) -> LoadedModel:
    return load_model(volume.model(E2), "cpu")


def test_a_batch_of_three_equals_them_one_by_one(e2_model: LoadedModel) -> None:
    """UNetT's input convolution sees no padding mask upstream: without `InputPaddingMask` this test fails (the
    shorter items differed from their single runs by ~3e-3, a hundred 16-bit steps, in a check here)."""
    samples, rate = sf.read(VOICE, dtype="float32", always_2d=True)
    narrator = VoicePrompt(np.ascontiguousarray(samples.T), rate, normalize_voice_text(VOICE_TEXT), key="narrator")
    reqs = [
        SynthesisRequest("Hello from the batch worker.", narrator, seed=1, nfe_step=STEPS),
        SynthesisRequest("The same voice says something else.", narrator, seed=2, nfe_step=STEPS, speed=1.2),
        SynthesisRequest("A third request, a little longer than the other two.", narrator, seed=3, nfe_step=STEPS),
    ]
    singles = [F5Synthesizer(e2_model).synthesize(r) for r in reqs]
    sizes: list[int] = []
    handle = e2_model.cfm.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: sizes.append(kwargs["x"].shape[0]), with_kwargs=True)
    try:
        batched = joined_batch(F5Synthesizer(e2_model, max_batch=8), reqs)
    finally:
        handle.remove()
    assert max(sizes) > 1, "chunks of several requests shared a sampling call"
    assert_close(batched, singles)


# --- seeding ---------------------------------------------------------------------------------


def test_the_hub_s_e2tts_base_seeds_from_a_mirror_as_a_unett(tmp_path: Path, volume: Volume) -> None:
    """The tiny E2's files at E2TTS_Base's hub paths (SWivid/E2-TTS), as a downloaded snapshot holds them."""
    model = HUB_MODELS["E2TTS_Base"]
    for target, remote in model.remote_files().items():
        (tmp_path / "mirror" / remote.hub_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(volume.model(E2).path / target, tmp_path / "mirror" / remote.hub_path)

    assert main(["--volume", str(tmp_path / "seeded"), "--from", str(tmp_path / "mirror"), "--model",
                 "E2TTS_Base"]) == 0
    config = Volume(tmp_path / "seeded").model("E2TTS_Base").config()
    assert config["backbone"] == "UNetT" and config["arch"] == f5tts_model_yaml("E2TTS_Base")["arch"]
    assert config["source"]["weights"] == {"repo": "SWivid/E2-TTS", "file": "E2TTS_Base/model_1200000.safetensors"}


def test_random_and_arch_e2tts_base_are_f5_tts_s_unett_of_333_m_parameters(tmp_path: Path) -> None:
    """`--random E2TTS_Base` and `--arch E2TTS_Base` (a checkpoint without its yaml) take F5-TTS's yaml as it is;
    the full-size model is built on the meta device only, to count its weights."""
    assert {"E2TTS_Base", "E2TTS_Small"} <= set(random_architectures())
    request = resolve(build_parser().parse_args(["--volume", str(tmp_path), "--random", "E2TTS_Base"]))[0]
    assert isinstance(request.source, RandomSource)
    random = request.source.model.config
    checkpoint = CheckpointSource(tmp_path / "model_last.pt", tmp_path / "vocab.txt", None, "E2TTS_Base", "e2",
                                  Vocoder(tmp_path, "vocos", {})).config()
    for config in (random, checkpoint):
        assert config["backbone"] == "UNetT" and config["arch"] == f5tts_model_yaml("E2TTS_Base")["arch"]
    vocab = sum(1 for _ in wheel_vocab().open(encoding="utf-8"))
    assert 333_000_000 < weights_bytes(random, vocab) / 4 < 334_000_000  # E2 TTS's paper: 333 M


def test_a_fine_tune_seeds_with_arch_e2tts_base_and_passes_doctor(
    tmp_path: Path, volume: Volume, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_finetune(tmp_path / "ckpts", volume.model(E2), seed=1)
    seeded = Volume(tmp_path / "seeded")
    assert main(["--volume", str(seeded.root), "--from", str(source), "--name", "e2-de", "--arch", "E2TTS_Base",
                 "--vocoder", str(volume.model(E2).vocoder_dir)]) == 0
    assert "finetune.yaml differs from --arch E2TTS_Base" in capsys.readouterr().err
    config = seeded.model("e2-de").config()
    assert config["backbone"] == "UNetT" and config["arch"] == TINY_E2_ARCH  # no DiT-only checkpoint_activations
    checks = run_checks(Context(Settings(volume=seeded.root, model="e2-de", device="cpu")),
                        ("model.complete", "model.checksums", "model.vocab", "model.weights"))
    assert [check.status for check in checks] == ["pass"] * 4, checks
    assert "UNetT" in checks[-1].detail
    assert type(load_model(seeded.model("e2-de"), "cpu").cfm.transformer).__name__ == "UNetT"
