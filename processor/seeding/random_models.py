"""Random-weight models: the real F5-TTS and Vocos classes, their weights noise, for tests, benchmarks and offline use.

`TINY` (built by `build_tiny`) is the small test model behind `f5-batch seed --tiny`
and the test suite, `tiny_e2()` its E2-TTS (UNetT) counterpart; `build_random` builds
any `RandomModel`, e.g. the full-size architecture that `f5-batch seed --random
F5TTS_v1_Base` makes for benchmarks. They produce noise, not speech. The loader
(`processor.model`) never needs this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from processor.model import EMA_PREFIX, SKIPPED_KEYS, build_cfm, build_vocoder, model_config, read_vocab
from processor.storage.volume import ModelFolder

TINY_ARCH: dict[str, Any] = {
    "dim": 64,
    "depth": 2,
    "heads": 2,
    "dim_head": 32,
    "ff_mult": 2,
    "text_dim": 32,
    "text_mask_padding": True,
    "qk_norm": None,
    "conv_layers": 1,
    "pe_attn_head": None,
    "attn_backend": "torch",
    "attn_mask_enabled": False,
    "checkpoint_activations": False,
}

# E2-TTS's shape in small (configs/E2TTS_Base.yaml: a UNetT, no text conv layers, text_dim = the mels, rotary
# embedding on one head, no padding mask in the text embedding): the UNetT code paths, as fast as TINY.
TINY_E2_ARCH: dict[str, Any] = {
    "dim": 64,
    "depth": 2,
    "heads": 2,
    "dim_head": 32,
    "ff_mult": 2,
    "text_mask_padding": False,
    "pe_attn_head": 1,
}


def vocos_config(dim: int, intermediate_dim: int, num_layers: int) -> dict[str, Any]:
    """A mel Vocos `config.yaml` (the layout of charactr/vocos-mel-24khz's) with the given backbone size."""
    return {
        "feature_extractor": {
            "class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
            "init_args": {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": 100, "padding": "center"},
        },
        "backbone": {
            "class_path": "vocos.models.VocosBackbone",
            "init_args": {
                "input_channels": 100, "dim": dim, "intermediate_dim": intermediate_dim, "num_layers": num_layers
            },
        },
        "head": {
            "class_path": "vocos.heads.ISTFTHead",
            "init_args": {"dim": dim, "n_fft": 1024, "hop_length": 256, "padding": "same"},
        },
    }


TINY_VOCOS = vocos_config(dim=64, intermediate_dim=128, num_layers=2)
RANDOM_NOTE = "random weights: produces noise, not speech"


def wheel_vocab() -> Path:
    """The vocabulary F5-TTS ships in its wheel (2545 entries, same as the hub's)."""
    return Path(str(files("f5_tts").joinpath("infer/examples/vocab.txt")))


@dataclass(frozen=True)
class RandomModel:
    """What a random-weight model folder is made of: its `config.json` and its vocoder's `config.yaml`."""

    config: dict[str, Any]
    vocoder: dict[str, Any]


TINY = RandomModel(model_config("tiny", TINY_ARCH, random_weights=True, note=RANDOM_NOTE), TINY_VOCOS)


def tiny_e2(name: str = "tiny-e2") -> RandomModel:
    """The small UNetT test model (`TINY_E2_ARCH`), named `name`, with the tiny vocoder."""
    config = model_config(name, TINY_E2_ARCH, backbone="UNetT", random_weights=True, note=RANDOM_NOTE)
    return RandomModel(config, TINY_VOCOS)


def build_random(folder: ModelFolder, model: RandomModel, seed: int = 0) -> None:
    """Write a random-weight model with the real F5-TTS and Vocos classes.

    It exercises every code path a trained model does and produces noise, not
    speech. Weights are F5-TTS's own initialisation (so persistent buffers such as
    the rotary frequencies are the real ones), except those it initialises to zero
    (DiT's output projections, adaLN gates): they get small random values, otherwise the
    transformer's output is exactly zero and a test could not tell whether text and
    reference audio reach the model at all.
    """
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.vocab.write_bytes(wheel_vocab().read_bytes())
    cfm = build_cfm(model.config, read_vocab(folder.vocab))
    with torch.no_grad():
        for param in cfm.parameters():
            if not param.any():
                param.normal_(0.0, 0.02)
    state = {EMA_PREFIX + k: v.contiguous() for k, v in cfm.state_dict().items() if k not in SKIPPED_KEYS}
    save_file(state, str(folder.weights))
    del cfm, state

    folder.vocoder_dir.mkdir(exist_ok=True)
    (folder.vocoder_dir / "config.yaml").write_text(yaml.safe_dump(model.vocoder, sort_keys=False))
    torch.save(build_vocoder(model.vocoder).state_dict(), folder.vocoder_dir / "pytorch_model.bin")
    folder.config_file.write_text(json.dumps(model.config, indent=2) + "\n")


def build_tiny(folder: ModelFolder, seed: int = 0) -> None:
    """The small random-weight test model: every code path of the full one, in a fraction of a second on CPU."""
    build_random(folder, TINY, seed)
