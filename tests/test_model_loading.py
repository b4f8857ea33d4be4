"""Fast loading: weights assigned into empty models equal F5-TTS's way of loading, and the import path stays lean.

F5-TTS builds a randomly initialised model and copies the checkpoint into it
(`load_checkpoint`); the worker builds it without storage and assigns the file's
tensors. Every parameter and buffer, persistent or computed, must come out the same.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from processor.errors import ModelError
from processor.model import EMA_PREFIX, build_cfm, build_vocoder, load_model, read_cfm, read_vocab, weights_file
from processor.seeding.sources import Fp16Copy, SourceFile
from processor.storage.volume import FP16_WEIGHTS, ModelFolder

from tests.support.paths import REPO, VOICE, VOICE_TEXT


def conventional_cfm(folder: ModelFolder, dtype: Any) -> Any:
    """F5-TTS's way (utils_infer.load_checkpoint): initialise, cast, copy the checkpoint in."""
    from safetensors.torch import load_file

    cfm = build_cfm(folder.config(), read_vocab(folder.vocab)).to(dtype)
    cfm.load_state_dict({k.removeprefix(EMA_PREFIX): v for k, v in load_file(str(folder.weights)).items()})
    return cfm.eval()


def conventional_vocoder(folder: ModelFolder) -> Any:
    """F5-TTS's way (utils_infer.load_vocoder): Vocos.from_hparams, then load_state_dict."""
    import torch
    from vocos import Vocos

    vocoder = Vocos.from_hparams(str(folder.vocoder_dir / "config.yaml"))
    vocoder.load_state_dict(torch.load(folder.vocoder_dir / "pytorch_model.bin", map_location="cpu", weights_only=True))
    return vocoder.eval()


def assert_same_tensors(actual: Any, expected: Any) -> None:
    """Same names, dtypes and values for every parameter and every buffer (non-persistent ones included)."""
    import torch

    for listing in ("named_parameters", "named_buffers"):
        got, want = dict(getattr(actual, listing)()), dict(getattr(expected, listing)())
        assert got.keys() == want.keys(), listing
        for name, tensor in want.items():
            assert got[name].dtype == tensor.dtype and got[name].device == tensor.device, name
            assert torch.equal(got[name], tensor), name
    assert actual.state_dict().keys() == expected.state_dict().keys()


def test_assigned_weights_equal_f5_tts_loading(tiny_model: ModelFolder) -> None:
    loaded = load_model(tiny_model, "cpu")

    assert_same_tensors(loaded.cfm, conventional_cfm(tiny_model, loaded.dtype))
    assert_same_tensors(loaded.vocoder, conventional_vocoder(tiny_model))
    assert not loaded.cfm.training and not loaded.vocoder.training
    assert loaded.timings.total_s > 0


def test_fp16_copy_gives_a_gpu_exactly_the_weights_it_would_cast(tiny_model: ModelFolder, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    folder = ModelFolder(tmp_path / "tiny")
    shutil.copytree(tiny_model.path, folder.path)
    made = Fp16Copy(folder.weights).fetch(SourceFile(FP16_WEIGHTS, "test", None, None), tmp_path / "staging")
    made.rename(folder.weights_fp16)

    fp32, fp16 = load_file(str(folder.weights)), load_file(str(folder.weights_fp16))
    assert fp16.keys() == fp32.keys()
    assert all(fp16[k].dtype == torch.float16 and torch.equal(fp16[k], v.half()) for k, v in fp32.items())
    assert weights_file(folder, torch.float16) == folder.weights_fp16
    assert weights_file(folder, torch.float32) == folder.weights  # CPU: never upcast fp16 weights
    # What load_model does on a GPU, short of the transfer: read the fp16 file, then cast what is left.
    on_gpu = read_cfm(folder, folder.config(), torch.float16).to(torch.float16)
    assert_same_tensors(on_gpu, conventional_cfm(tiny_model, torch.float16))


def rewrite_weights(folder: ModelFolder, change: Any) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder.weights))
    change(state)
    save_file(state, str(folder.weights))


BIAS = EMA_PREFIX + "transformer.proj_out.bias"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop(BIAS), "missing transformer.proj_out.bias"),
        (lambda s: s.update({EMA_PREFIX + "transformer.extra": s[BIAS].clone()}), "unexpected transformer.extra"),
        (lambda s: s.update({BIAS: s[BIAS][:7].clone()}),
         r"transformer.proj_out.bias is \(7,\) in the file, \(100,\) in the config"),
    ],
    ids=["missing-key", "unexpected-key", "wrong-shape"],
)
def test_weights_that_do_not_fit_fail_with_model_error(
    tiny_model: ModelFolder, tmp_path: Path, change: Any, message: str
) -> None:
    folder = ModelFolder(tmp_path / "tiny")
    shutil.copytree(tiny_model.path, folder.path)
    rewrite_weights(folder, change)

    with pytest.raises(ModelError, match=f"do not match config.json: .*{message}"):
        load_model(folder, "cpu")


def test_vocoder_that_does_not_fit_fails_with_model_error(tiny_model: ModelFolder, tmp_path: Path) -> None:
    import yaml

    folder = ModelFolder(tmp_path / "tiny")
    shutil.copytree(tiny_model.path, folder.path)
    config = yaml.safe_load((folder.vocoder_dir / "config.yaml").read_text())
    config["backbone"]["init_args"]["num_layers"] = 3
    (folder.vocoder_dir / "config.yaml").write_text(yaml.safe_dump(config))

    with pytest.raises(ModelError, match="pytorch_model.bin do not match config.json: missing backbone.convnext.2"):
        load_model(folder, "cpu")


def test_deferred_imports_behave_like_the_real_ones(tiny_model: ModelFolder) -> None:
    """What the lean import path defers still works when used: BigVGAN mels, Chinese text, einx."""
    import einx
    import numpy as np
    from f5_tts.model import modules, utils
    from librosa.filters import mel
    from pypinyin import Style, lazy_pinyin

    load_model(tiny_model, "cpu")
    mel_args = {"sr": 24000, "n_fft": 1024, "n_mels": 100, "fmin": 0, "fmax": None}
    assert np.array_equal(modules.librosa_mel_fn(**mel_args), mel(**mel_args))
    syllables = lazy_pinyin("你好", style=Style.TONE3, tone_sandhi=True)
    assert utils.convert_char_to_pinyin(["你好 world"]) == [[" ", syllables[0], " ", syllables[1], " ", *"world"]]
    assert callable(einx.subtract)  # type: ignore[attr-defined]


def test_vocoder_builds_the_same_without_storage() -> None:
    """Vocos made inside empty_weights has the same structure and buffers as one made normally."""
    import torch

    from processor.model import empty_weights
    from processor.seeding.random_models import TINY_VOCOS

    with empty_weights():
        empty = build_vocoder(TINY_VOCOS)
    normal = build_vocoder(TINY_VOCOS)
    assert all(p.is_meta for p in empty.parameters() if p.dim() > 1)  # weight matrices and kernels
    for name, buffer in normal.named_buffers():
        assert torch.equal(dict(empty.named_buffers())[name], buffer), name


# What the worker never runs: F5-TTS's UI, CLI, training and ASR, and what only they need.
HEAVY = ("gradio", "wandb", "accelerate", "datasets", "transformers", "matplotlib", "f5_tts.model.trainer",
         "f5_tts.infer", "librosa", "pypinyin", "torch._dynamo", "sympy", "huggingface_hub")
WORKER_PATH = """
import json, sys
from pathlib import Path
import numpy as np, soundfile as sf
import processor.cli
from processor.app import load_synthesizer
from processor.audio import VoicePrompt
from processor.settings import Settings
from processor.synthesis import SynthesisRequest

volume, voice, text = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
synthesizer = load_synthesizer(Settings(volume=volume, model="tiny", device="cpu"))
samples, rate = sf.read(voice, dtype="float32", always_2d=True)
prompt = VoicePrompt(samples=np.ascontiguousarray(samples.T), sample_rate=rate, text=text)
wave = synthesizer.synthesize(SynthesisRequest(text="One short job.", voice=prompt, seed=1, nfe_step=2))
print(json.dumps({"samples": len(wave), "loaded": [m for m in json.loads(sys.argv[4]) if m in sys.modules]}))
"""


def test_worker_import_path_stays_lean(tiny_model: ModelFolder) -> None:
    """Start-up, model load and a first synthesis in a fresh process import none of F5-TTS's heavy extras."""
    out = subprocess.run(
        [sys.executable, "-c", WORKER_PATH, str(tiny_model.path.parent.parent), str(VOICE), VOICE_TEXT,
         json.dumps(HEAVY)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["samples"] > 0
    assert result["loaded"] == [], f"the worker's path imports {result['loaded']}"
