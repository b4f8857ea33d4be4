"""Model folders: their `config.json`, the `tiny` random model, and loading.

A model folder is self-describing: `config.json` carries the backbone, its
architecture and the mel settings, so the worker never needs F5-TTS's training
configs or the hub at run time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from processor.errors import ModelError
from processor.storage.volume import ModelFolder

CONFIG_FORMAT = 1

# F5-TTS's mel settings for every shipped vocos model (configs/F5TTS_v1_Base.yaml).
MEL_SPEC: dict[str, Any] = {
    "target_sample_rate": 24000,
    "n_mel_channels": 100,
    "hop_length": 256,
    "win_length": 1024,
    "n_fft": 1024,
    "mel_spec_type": "vocos",
}

# Keys of hub checkpoints carry the EMA prefix; F5-TTS strips it when use_ema=True.
EMA_PREFIX = "ema_model."
_SKIPPED_KEYS = {"initted", "step", "mel_spec.mel_stft.mel_scale.fb", "mel_spec.mel_stft.spectrogram.window"}

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

TINY_VOCOS: dict[str, Any] = {
    "feature_extractor": {
        "class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
        "init_args": {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": 100, "padding": "center"},
    },
    "backbone": {
        "class_path": "vocos.models.VocosBackbone",
        "init_args": {"input_channels": 100, "dim": 64, "intermediate_dim": 128, "num_layers": 2},
    },
    "head": {
        "class_path": "vocos.heads.ISTFTHead",
        "init_args": {"dim": 64, "n_fft": 1024, "hop_length": 256, "padding": "same"},
    },
}


def wheel_vocab() -> Path:
    """The vocabulary F5-TTS ships in its wheel (2545 entries, same as the hub's)."""
    return Path(str(files("f5_tts").joinpath("infer/examples/vocab.txt")))


def model_config(name: str, arch: dict[str, Any], *, backbone: str = "DiT", **extra: Any) -> dict[str, Any]:
    return {
        "format": CONFIG_FORMAT, "name": name, "backbone": backbone, "arch": arch, "mel_spec": dict(MEL_SPEC), **extra
    }


def read_vocab(path: Path) -> dict[str, int]:
    """Same mapping as f5_tts.model.utils.get_tokenizer(path, "custom")."""
    vocab: dict[str, int] = {}
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            vocab[line[:-1]] = i
    return vocab


def build_cfm(config: dict[str, Any], vocab_char_map: dict[str, int]) -> Any:
    """The F5-TTS flow-matching model of `config`, with freshly initialised weights."""
    from f5_tts.model.backbones.dit import DiT
    from f5_tts.model.cfm import CFM

    if config.get("backbone") != "DiT":
        raise ModelError(f"unsupported backbone {config.get('backbone')!r}: only DiT models are supported")
    mel = config["mel_spec"]
    transformer = DiT(**config["arch"], text_num_embeds=len(vocab_char_map), mel_dim=mel["n_mel_channels"])
    return CFM(
        transformer=transformer,
        mel_spec_kwargs={k: mel[k] for k in MEL_SPEC},
        odeint_kwargs={"method": "euler"},
        vocab_char_map=vocab_char_map,
    )


def build_tiny(folder: ModelFolder, seed: int = 0) -> None:
    """Write a small random-weight model with the real F5-TTS and Vocos classes.

    It exercises every code path the full model does, in a fraction of a second
    on CPU, and produces noise, not speech. Weights that F5-TTS initialises to
    zero (output projections, adaLN gates) are filled with small random values:
    otherwise the transformer's output is exactly zero and a test could not tell
    whether text and reference audio reach the model at all.
    """
    import torch
    from safetensors.torch import save_file
    from vocos import Vocos

    torch.manual_seed(seed)
    folder.path.mkdir(parents=True, exist_ok=True)
    vocab = wheel_vocab()
    (folder.vocab).write_bytes(vocab.read_bytes())
    config = model_config("tiny", TINY_ARCH, random_weights=True, note="random weights: produces noise, not speech")
    cfm = build_cfm(config, read_vocab(folder.vocab))
    with torch.no_grad():
        for param in cfm.parameters():
            if not param.any():
                param.normal_(0.0, 0.02)
    state = {EMA_PREFIX + k: v.contiguous() for k, v in cfm.state_dict().items() if k not in _SKIPPED_KEYS}
    save_file(state, str(folder.weights))

    folder.vocoder_dir.mkdir(exist_ok=True)
    (folder.vocoder_dir / "config.yaml").write_text(yaml.safe_dump(TINY_VOCOS, sort_keys=False))
    vocos = Vocos(
        feature_extractor=_instantiate(TINY_VOCOS["feature_extractor"]),
        backbone=_instantiate(TINY_VOCOS["backbone"]),
        head=_instantiate(TINY_VOCOS["head"]),
    )
    torch.save(vocos.state_dict(), folder.vocoder_dir / "pytorch_model.bin")
    folder.config_file.write_text(json.dumps(config, indent=2) + "\n")


def _instantiate(spec: dict[str, Any]) -> Any:
    from vocos.pretrained import instantiate_class

    return instantiate_class(args=(), init=spec)


@dataclass
class LoadedModel:
    name: str
    cfm: Any  # f5_tts.model.cfm.CFM
    vocoder: Any  # vocos.Vocos
    device: str
    dtype: Any  # torch.dtype
    sample_rate: int
    hop_length: int
    random_weights: bool


def pick_device(requested: str) -> str:
    import torch

    if requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"device {requested!r} requested but no CUDA device is visible")
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str) -> Any:
    """fp16 on CUDA with compute capability >= 7 (as F5-TTS does), else fp32."""
    import torch

    if device.startswith("cuda") and torch.cuda.get_device_properties(device).major >= 7:
        return torch.float16
    return torch.float32


def load_model(folder: ModelFolder, device: str = "auto") -> LoadedModel:
    """Load a model folder from the volume; never touches the network."""
    import torch
    from safetensors.torch import load_file
    from vocos import Vocos

    missing = folder.missing_files()
    if missing:
        raise ModelError(
            f"model folder {folder.path} is incomplete (missing {', '.join(missing)}); "
            f"seed it with: python scripts/seed_volume.py --volume {folder.path.parent.parent} --model {folder.name}"
        )
    config = folder.config()
    device = pick_device(device)
    dtype = pick_dtype(device)

    cfm = build_cfm(config, read_vocab(folder.vocab))
    state = load_file(str(folder.weights))
    state = {k.removeprefix(EMA_PREFIX): v for k, v in state.items() if k.removeprefix(EMA_PREFIX) not in _SKIPPED_KEYS}
    try:
        cfm.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"weights in {folder.weights} do not match config.json: {exc}") from exc
    cfm = cfm.to(dtype).to(device).eval()

    vocoder = Vocos.from_hparams(str(folder.vocoder_dir / "config.yaml"))
    vocoder.load_state_dict(torch.load(folder.vocoder_dir / "pytorch_model.bin", map_location="cpu", weights_only=True))
    vocoder = vocoder.eval().to(device)

    mel = config["mel_spec"]
    return LoadedModel(
        name=folder.name,
        cfm=cfm,
        vocoder=vocoder,
        device=device,
        dtype=dtype,
        sample_rate=int(mel["target_sample_rate"]),
        hop_length=int(mel["hop_length"]),
        random_weights=bool(config.get("random_weights", False)),
    )
