"""The worker's loaded models: each model folder a manifest names, loaded on first use and kept while it fits.

A manifest's `"model"` names a folder under `<volume>/models/` (None: the worker's
`F5B_MODEL`). `require` says, cheaply and from any thread, whether the volume has it;
`get` loads it on first use, and unloads the least recently used models first when
the new one needs room:

- on CPU, at most `F5B_MAX_MODELS` models are loaded;
- on a GPU (a synthesizer whose device starts with "cuda"), the loaded models' bytes
  stay within a budget: `F5B_MODEL_MEMORY_BYTES` when set, else `B1 + 0.6 * F1`, where
  B1 is the bytes of the first model this object loaded and F1 the memory
  `torch.cuda.mem_get_info` reports free on its device right after that load. A
  model's bytes are its CFM's and vocoder's parameters and buffers, as loaded
  (fp16 on most GPUs). Before a model is first loaded its bytes are estimated from
  its files on the volume (fp32 weights plus the vocoder: an upper bound), so room
  is made before the load, and the budget is checked again with the measured bytes
  after it. A model larger than the whole budget still loads, alone.

An unloaded model's references are all dropped here; a caller that still holds its
synthesizer keeps it in memory, so callers take it from `get` for each batch.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from processor.errors import ModelNotFound
from processor.logs import logger
from processor.metrics import Metrics
from processor.settings import Settings
from processor.storage.volume import ModelFolder, Volume
from processor.synthesis import Synthesizer

Load = Callable[[str], Synthesizer]
# The share of the GPU memory free after the first model that the models may take by default (the rest: batches).
FREE_MEMORY_SHARE = 0.6


class Models:
    """The models one worker has loaded, least recently used first. Thread-safe."""

    def __init__(self, settings: Settings, volume: Volume, load: Load | None = None,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.volume = volume
        self.default = settings.model
        self._load = load or default_load(settings)
        self._metrics = metrics
        self._lock = threading.Lock()  # the table below; held only for moments
        self._loading = threading.Lock()  # one load (and its evictions) at a time; require/is_loaded never wait on it
        self._loaded: OrderedDict[str, Synthesizer] = OrderedDict()
        self._bytes: dict[str, int] = {}  # measured bytes of every model loaded so far, kept after an unload
        self._budget: int | None = settings.model_memory_bytes or None

    @property
    def loaded(self) -> list[str]:
        """The loaded models' names, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def is_loaded(self, name: str) -> bool:
        with self._lock:
            return name in self._loaded

    @property
    def budget_bytes(self) -> int | None:
        """The GPU memory budget: None on CPU, or before the first model loaded when F5B_MODEL_MEMORY_BYTES is 0."""
        return self._budget

    def require(self, name: str | None) -> str:
        """The model a manifest's `model` names (None: the worker's); ModelNotFound if the volume lacks it. No load."""
        name = name or self.default
        if self.is_loaded(name):
            return name
        if is_folder_name(name) and not self.volume.model(name).missing_files():
            return name
        raise ModelNotFound(not_found_message(self.settings, self.volume, name))

    def get(self, name: str) -> Synthesizer:
        """The synthesizer of model `name`, loaded now if it is not, after unloading what it needs room from."""
        with self._loading:
            with self._lock:
                if name in self._loaded:
                    self._loaded.move_to_end(name)
                    return self._loaded[name]
            self._make_room(self._bytes.get(name) or files_bytes(self.volume.model(name)))
            synthesizer = self._load_one(name)
            if self._on_gpu():
                if self._budget is None:
                    self._budget = self._bytes[name] + int(FREE_MEMORY_SHARE * free_memory(synthesizer.device))
                self._make_room(None, keep=name)
            return synthesizer

    def _load_one(self, name: str) -> Synthesizer:
        started = time.perf_counter()
        synthesizer = self._load(name)
        seconds = time.perf_counter() - started
        self._bytes[name] = synthesizer_bytes(synthesizer)
        with self._lock:
            self._loaded[name] = synthesizer
            loaded = list(self._loaded)
        logger.info(f"model {name} loaded on {synthesizer.device} in {seconds:.1f} s",
                    extra={"stage": "model", "event": "loaded", "model": name, "device": synthesizer.device,
                           "seconds": round(seconds, 3), "bytes": self._bytes[name], "loaded": loaded})
        if self._metrics is not None:
            self._metrics.model_loaded(name, len(loaded))
        return synthesizer

    def _make_room(self, incoming: int | None, keep: str | None = None) -> None:
        """Unload the least recently used models (never `keep`) until they fit with one of `incoming` bytes more
        (None: with none more)."""
        while True:
            with self._lock:
                others = [name for name in self._loaded if name != keep]
            if not others or self._fits(incoming):
                return
            self._unload(others[0])

    def _fits(self, incoming: int | None) -> bool:
        """Within the device's limit, with a model of `incoming` bytes more (None: none)."""
        with self._lock:
            names = list(self._loaded)
        if self._on_gpu():
            if self._budget is None:
                return True
            return sum(self._bytes.get(name, 0) for name in names) + (incoming or 0) <= self._budget
        return len(names) + (incoming is not None) <= self.settings.max_models

    def _on_gpu(self) -> bool:
        with self._lock:
            return any(synthesizer.device.startswith("cuda") for synthesizer in self._loaded.values())

    def _unload(self, name: str) -> None:
        started = time.perf_counter()
        with self._lock:
            synthesizer = self._loaded.pop(name)
            loaded = list(self._loaded)
        device = synthesizer.device
        del synthesizer
        gc.collect()  # the synthesizer's forward hook refers back to it: only the collector frees the cycle
        if device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
        seconds = time.perf_counter() - started
        logger.info(f"model {name} unloaded from {device} in {seconds:.1f} s",
                    extra={"stage": "model", "event": "unloaded", "model": name, "device": device,
                           "seconds": round(seconds, 3), "bytes": self._bytes.get(name, 0), "loaded": loaded})
        if self._metrics is not None:
            self._metrics.model_unloaded(name, len(loaded))


def adopting(name: str, first: Synthesizer, load: Load) -> Load:
    """`load`, except that model `name` is `first` (loaded already, at start-up) the first time it is asked for."""
    held = [first]

    def get(wanted: str) -> Synthesizer:
        if held and wanted == name:
            return held.pop()  # not kept here: an unloaded model must leave no reference behind
        return load(wanted)

    return get


def default_load(settings: Settings) -> Load:
    """`processor.app.open_synthesizer` for `settings`: the worker's own loading, model by model."""

    def load(name: str) -> Synthesizer:
        from processor.app import open_synthesizer  # app builds the worker, which holds a Models: import late

        return open_synthesizer(settings, name)

    return load


def is_folder_name(name: str) -> bool:
    """A folder directly under models/, never a path (the manifest's pattern says so too)."""
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".")


def not_found_message(settings: Settings, volume: Volume, name: str) -> str:
    from processor.checks import SEED_COMMAND, is_known_model, seed_command

    seeded = volume.seeded_models()
    there = f"it has {', '.join(seeded)}" if seeded else "it has no model seeded"
    if is_known_model(name):
        command = seed_command(settings.model_copy(update={"model": name}))
    else:
        command = f"{SEED_COMMAND} --volume {settings.volume} --from DIR --name {name} --arch ARCH (a fine-tune's " \
                  "checkpoint)"
    return f"model {name!r} is not on the worker's volume {volume.root}: {there}; seed it with: {command}"


def files_bytes(folder: ModelFolder) -> int:
    """An upper bound of a model's bytes once loaded, before it is: its fp32 weights and its vocoder's file."""
    files = (folder.weights, folder.vocoder_dir / "pytorch_model.bin")
    return sum(path.stat().st_size for path in files if path.is_file())


def synthesizer_bytes(synthesizer: Synthesizer) -> int:
    """The loaded CFM's and vocoder's parameters and buffers, in bytes (0 for a synthesizer without a model)."""
    model: Any = getattr(synthesizer, "model", None)
    total = 0
    for module in (getattr(model, "cfm", None), getattr(model, "vocoder", None)):
        if module is not None:
            total += sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
    return total


def free_memory(device: str) -> int:
    import torch

    free, _total = torch.cuda.mem_get_info(device)
    return int(free)
