"""Model folders: their `config.json`, and loading.

A model folder is self-describing: `config.json` carries the backbone, its
architecture and the mel settings, so the worker never needs F5-TTS's training
configs or the hub at run time.

Loading is built for a short cold start: F5-TTS's model code is imported without
the rest of the package (`imports.py`), and models are built with empty weights
(`empty_weights`) that take their tensors straight from the files, instead of
initialising 337 M random weights only to overwrite them.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from processor.errors import ModelError
from processor.imports import lean_imports
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
# Checkpoint entries that are not weights: training counters and buffers the model computes itself.
SKIPPED_KEYS = {"initted", "step", "mel_spec.mel_stft.mel_scale.fb", "mel_spec.mel_stft.spectrogram.window"}

# F5-TTS's backbones (f5_tts/model/backbones/), by the name its configs give them in `model.backbone`.
BACKBONES = ("DiT", "UNetT")


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


def check_supported(config: dict[str, Any]) -> None:
    """Refuse, in one line, what the worker cannot run: another backbone, another vocoder, other mel settings.

    BigVGAN checkpoints (`mel_spec_type: bigvgan`) need F5-TTS's `third_party.BigVGAN`, which the f5-tts wheel
    does not ship (only a source checkout with its git submodule has it).
    """
    refusal = unsupported_vocoder(config)
    if refusal:
        raise ModelError(refusal)
    mel = config.get("mel_spec") or {}
    if config.get("backbone") not in BACKBONES:
        raise ModelError(f"unsupported backbone {config.get('backbone')!r}: only {' and '.join(BACKBONES)} models "
                         f"are supported")
    if mel != MEL_SPEC:
        raise ModelError(f"model {config.get('name')!r} has mel settings {mel}; only {MEL_SPEC} is supported")


def unsupported_vocoder(config: dict[str, Any]) -> str | None:
    """Why the config's vocoder cannot be loaded here, or None."""
    mel = config.get("mel_spec") or {}
    if mel.get("mel_spec_type") == "bigvgan":
        return (f"model {config.get('name')!r} uses the BigVGAN vocoder, which the installed f5-tts cannot load "
                f"(its wheel ships no third_party.BigVGAN): only Vocos models are supported")
    return None


# --- building models -------------------------------------------------------------------


def build_cfm(config: dict[str, Any], vocab_char_map: dict[str, int]) -> Any:
    """The F5-TTS flow-matching model of `config`, initialised as F5-TTS does (or empty, on the meta device).

    Built as `utils_infer.load_model(DiT or UNetT, arch, ...)` builds it: the backbone of `config["backbone"]`
    (F5TTS_* are DiT, E2TTS_* UNetT), its `arch` as keyword arguments.
    """
    lean_imports()
    from f5_tts.model.cfm import CFM

    check_supported(config)
    mel = config["mel_spec"]
    backbone = backbone_class(config["backbone"])
    transformer = backbone(**config["arch"], text_num_embeds=len(vocab_char_map), mel_dim=mel["n_mel_channels"])
    return CFM(
        transformer=transformer,
        mel_spec_kwargs={k: mel[k] for k in MEL_SPEC},
        odeint_kwargs={"method": "euler"},
        vocab_char_map=vocab_char_map,
    )


def backbone_class(name: str) -> Any:
    from f5_tts.model.backbones.dit import DiT
    from f5_tts.model.backbones.unett import UNetT

    return {"DiT": DiT, "UNetT": UNetT}[name]


def build_vocoder(vocoder_config: dict[str, Any]) -> Any:
    """A Vocos from the parsed `config.yaml`, as `Vocos.from_hparams` builds it."""
    lean_imports()
    from vocos import Vocos

    return Vocos(
        feature_extractor=_instantiate(vocoder_config["feature_extractor"]),
        backbone=_instantiate(vocoder_config["backbone"]),
        head=_instantiate(vocoder_config["head"]),
    )


def _instantiate(spec: dict[str, Any]) -> Any:
    from vocos.pretrained import instantiate_class

    return instantiate_class(args=(), init=spec)


def weights_bytes(config: dict[str, Any], vocab_size: int) -> int:
    """Size of the fp32 tensors of `config`'s model, from shapes alone (no weights are allocated)."""
    lean_imports()
    with empty_weights():
        cfm = build_cfm(config, {str(i): i for i in range(vocab_size)})
    return sum(v.numel() * 4 for k, v in cfm.state_dict().items() if k not in SKIPPED_KEYS)


# Initialisation functions and the in-place ops they are made of: on a tensor without storage they
# have nothing to do, and on the meta device torch runs some (normal_, erfinv_) through Python
# reference kernels whose first use imports torch._dynamo (over a second).
_INIT_OPS = frozenset({"normal_", "uniform_", "trunc_normal_", "erfinv_", "mul_", "add_", "clamp_", "fill_", "zero_"})


@contextlib.contextmanager
def empty_weights() -> Iterator[None]:
    """Build models inside this to get parameters without storage or initialisation, and buffers as usual.

    Parameters are made with `torch.empty` and then initialised in place: here they
    are made on the meta device and their initialisation is skipped, to be replaced
    by the file's tensors (`load_state_dict(assign=True)`). Everything else is
    computed as usual, so buffers a checkpoint does not hold (the rotary tables, the
    mel filterbank and windows) come out exactly as F5-TTS and Vocos make them.
    """
    with _empty_weights_mode()():
        yield


@functools.cache
def _empty_weights_mode() -> Any:
    import torch
    from torch.overrides import TorchFunctionMode

    class EmptyWeights(TorchFunctionMode):  # type: ignore[misc]
        def __torch_function__(
            self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
        ) -> Any:
            kwargs = kwargs or {}
            if func is torch.empty and kwargs.get("device") is None:
                return func(*args, **{**kwargs, "device": "meta"})
            target = args[0] if args else kwargs.get("tensor")
            is_init = getattr(func, "__module__", None) == "torch.nn.init" or getattr(func, "__name__", "") in _INIT_OPS
            if is_init and isinstance(target, torch.Tensor) and target.is_meta:
                return target
            return func(*args, **kwargs)

    return EmptyWeights


# --- loading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadTimings:
    """Where a model load's time went, in seconds: for the startup log line and bench/cold_start.py."""

    imports_s: float = 0.0  # torch, F5-TTS's model code, Vocos
    weights_s: float = 0.0  # reading the files and building the models around them
    device_s: float = 0.0  # dtype conversion and transfer to the device

    @property
    def total_s(self) -> float:
        return self.imports_s + self.weights_s + self.device_s

    def as_dict(self) -> dict[str, float]:
        return {"imports_s": round(self.imports_s, 3), "weights_s": round(self.weights_s, 3),
                "device_s": round(self.device_s, 3), "total_s": round(self.total_s, 3)}


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
    timings: LoadTimings = field(default_factory=LoadTimings)


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


def weights_file(folder: ModelFolder, dtype: Any) -> Path:
    """The fp16 copy when computing in fp16 (half the bytes to read); the fp32 file otherwise, never upcast fp16."""
    import torch

    if dtype == torch.float16 and folder.weights_fp16.is_file():
        return folder.weights_fp16
    return folder.weights


def load_model(folder: ModelFolder, device: str = "auto") -> LoadedModel:
    """Load a model folder from the volume; never touches the network."""
    started = time.perf_counter()
    lean_imports()
    imported = time.perf_counter()
    check_complete(folder)
    config = folder.config()
    device = pick_device(device)
    dtype = pick_dtype(device)
    cfm = read_cfm(folder, config, dtype)
    vocoder = read_vocoder(folder)
    read = time.perf_counter()
    cfm = cfm.to(dtype).to(device).eval()
    vocoder = vocoder.eval().to(device)
    _synchronize(device)
    moved = time.perf_counter()

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
        timings=LoadTimings(imports_s=imported - started, weights_s=read - imported, device_s=moved - read),
    )


def check_complete(folder: ModelFolder) -> None:
    missing = folder.missing_files()
    if missing:
        raise ModelError(
            f"model folder {folder.path} is incomplete (missing {', '.join(missing)}); "
            f"seed it with: f5-batch seed --volume {folder.path.parent.parent} --model {folder.name}"
        )


def read_cfm(folder: ModelFolder, config: dict[str, Any], dtype: Any) -> Any:
    """The CFM of `config` holding the weights file's tensors, built without initialising any weights."""
    from safetensors.torch import load_file

    lean_imports()  # outside empty_weights: module-level tensors are made as usual
    vocab = read_vocab(folder.vocab)
    with empty_weights():
        cfm = build_cfm(config, vocab)
    path = weights_file(folder, dtype)
    state = {k.removeprefix(EMA_PREFIX): v for k, v in load_file(str(path)).items()}
    load_exactly(cfm, {k: v for k, v in state.items() if k not in SKIPPED_KEYS}, path)
    check_materialised(cfm, path)
    return cfm


def read_vocoder(folder: ModelFolder) -> Any:
    """The Vocos of `vocos/config.yaml` holding `vocos/pytorch_model.bin`'s tensors, built without initialising any."""
    import torch

    lean_imports()
    config = yaml.safe_load((folder.vocoder_dir / "config.yaml").read_text())
    with empty_weights():
        vocoder = build_vocoder(config)
    path = folder.vocoder_dir / "pytorch_model.bin"
    load_exactly(vocoder, torch.load(path, map_location="cpu", weights_only=True), path)
    check_materialised(vocoder, path)
    return vocoder


def load_exactly(module: Any, state: dict[str, Any], path: Path) -> None:
    """Put the file's tensors into a module built on meta; the file must match the config key for key, shape for shape.

    `assign=True` takes the tensors as they are instead of copying them into
    initialised ones; the shapes are checked here first, so a mismatch reads the same
    whatever torch's assign path reports.
    """
    expected = module.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    shapes = [
        f"{key} is {tuple(state[key].shape)} in the file, {tuple(value.shape)} in the config"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    problems = [
        *([f"missing {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}"] if missing else []),
        *([f"unexpected {', '.join(unexpected[:5])}{' …' if len(unexpected) > 5 else ''}"] if unexpected else []),
        *shapes[:5],
    ]
    if problems:
        raise ModelError(f"weights in {path} do not match config.json: {'; '.join(problems)}")
    try:
        module.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise ModelError(f"weights in {path} do not match config.json: {exc}") from exc


def check_materialised(module: Any, path: Path) -> None:
    """A tensor still on meta would fail at the first job; fail at startup instead, naming it."""
    empty = [name for name, t in (*module.named_parameters(), *module.named_buffers()) if t.is_meta]
    if empty:
        raise ModelError(
            f"after loading {path}, {', '.join(empty)} has no value: this version of F5-TTS or "
            f"Vocos makes a tensor with torch.empty that no file provides (see processor.model.empty_weights)"
        )


def _synchronize(device: str) -> None:
    """Transfers to a GPU return before they finish; wait, so the timing covers them."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)
