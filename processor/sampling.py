"""F5-TTS's sampling loop for a batch of items that each bring their own noise.

`CFM.sample` (f5_tts/model/cfm.py, 1.1.22) draws every item's noise inside the
call, from the global generator or re-seeded with one seed for all items, so a
batch of jobs with their own seeds cannot go through it. `sample` repeats its
steps for the arguments the worker uses (a mel reference, texts as token lists,
per-item durations, EPSS timesteps, sway, Euler through torchdiffeq, classifier-
free guidance as one doubled batch) and takes each item's noise as input.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_DURATION = 65536  # CFM.sample's default clamp, in frames


@dataclass(frozen=True)
class SamplingSettings:
    """What must be equal for items to share one sampling call."""

    steps: int
    cfg_strength: float
    sway_sampling_coef: float


@dataclass(frozen=True, eq=False)
class SamplingItem:
    """One text chunk: reference mel (frames, mels), tokens, frames to generate, noise (duration, mels)."""

    cond: Any
    tokens: list[str]
    duration: int
    noise: Any


def clamp_duration(estimate: int, tokens: int, cond_frames: int) -> int:
    """CFM.sample's rule: at least the text or the prompt plus one frame, at most MAX_DURATION."""
    return min(max(max(tokens, cond_frames) + 1, estimate), MAX_DURATION)


def sample(cfm: Any, items: Sequence[SamplingItem], settings: SamplingSettings) -> list[Any]:
    """Sampled mels, one (duration, mels) tensor per item, the reference part restored as CFM.sample does."""
    import torch
    import torch.nn.functional as F
    from f5_tts.model.utils import lens_to_mask, list_str_to_idx
    from torch.nn.utils.rnn import pad_sequence

    device = cfm.device
    durations = torch.tensor([item.duration for item in items], device=device, dtype=torch.long)
    lens = torch.tensor([item.cond.shape[0] for item in items], device=device, dtype=torch.long)
    frames = max(item.duration for item in items)
    cond = pad_sequence([item.cond for item in items], padding_value=0.0, batch_first=True)
    cond_mask = F.pad(lens_to_mask(lens), (0, frames - cond.shape[1]), value=False).unsqueeze(-1)
    cond = F.pad(cond, (0, 0, 0, frames - cond.shape[1]), value=0.0)
    step_cond = torch.where(cond_mask, cond, torch.zeros_like(cond))
    text = list_str_to_idx([item.tokens for item in items], cfm.vocab_char_map).to(device)
    # Upstream passes no mask for a single item ("single inference need no mask"); keep that path identical.
    mask = lens_to_mask(durations) if len(items) > 1 else None
    noise = pad_sequence([item.noise for item in items], padding_value=0, batch_first=True)
    velocity = _velocity(cfm.transformer, step_cond, text, mask, settings.cfg_strength)
    try:
        trajectory = _odeint(cfm, velocity, noise, _timesteps(settings, device, step_cond.dtype))
    finally:
        # A cached text embedding belongs to this batch; an aborted call would otherwise leave it for the next.
        cfm.transformer.clear_cache()
    out = torch.where(cond_mask, cond, trajectory[-1])
    return [out[i, : item.duration] for i, item in enumerate(items)]


def _timesteps(settings: SamplingSettings, device: Any, dtype: Any) -> Any:
    import torch
    from f5_tts.model.utils import get_epss_timesteps

    t = get_epss_timesteps(settings.steps, device=device, dtype=dtype)
    return t + settings.sway_sampling_coef * (torch.cos(torch.pi / 2 * t) - 1 + t)


def _odeint(cfm: Any, velocity: Any, noise: Any, t: Any) -> Any:
    from torchdiffeq import odeint

    return odeint(velocity, noise, t, **cfm.odeint_kwargs)


def _velocity(transformer: Any, cond: Any, text: Any, mask: Any, cfg_strength: float) -> Any:
    """The flow CFM.sample integrates: guided (cond and uncond in one doubled batch) unless cfg is ~0."""
    import torch

    def fn(t: Any, x: Any) -> Any:
        if cfg_strength < 1e-5:
            return transformer(x=x, cond=cond, text=text, time=t, mask=mask,
                               drop_audio_cond=False, drop_text=False, cache=True)
        pred_cfg = transformer(x=x, cond=cond, text=text, time=t, mask=mask, cfg_infer=True, cache=True)
        pred, null_pred = torch.chunk(pred_cfg, 2, dim=0)
        return pred + (pred - null_pred) * cfg_strength

    return fn


def mask_padding(transformer: Any) -> None:
    """Make padded items attend only to their own frames, as they would alone.

    Shipped configs set `attn_mask_enabled: False`, so in a padded batch the
    shorter items attend to padding. Enabling it in F5-TTS's `AttnProcessor`
    (torch backend) expands the padding mask to (batch, heads, frames, frames),
    which `scaled_dot_product_attention` then materialises, twice, at every
    layer and step: quadratic memory and traffic (on CPU it made a batch twice
    as slow). `PaddingMaskedAttention` passes the same mask as (batch, 1, 1,
    frames) instead, which the kernels broadcast: the same values (bit for bit
    on CPU, tests/test_batching.py).
    Single items pass no mask (CFM.sample's rule) and run upstream's code. UNetT's
    input convolution gets the mask too (`InputPaddingMask`), as DiT's does.
    """
    from f5_tts.model.modules import AttnProcessor

    for module in transformer.modules():
        processor: Any = getattr(module, "processor", None)
        if type(processor) is AttnProcessor and processor.attn_backend == "torch":
            module.processor = PaddingMaskedAttention(processor)
        elif hasattr(processor, "attn_mask_enabled"):  # flash_attn's varlen path or joint attention: upstream's own
            processor.attn_mask_enabled = True
    if "audio_mask" not in inspect.signature(transformer.input_embed.forward).parameters:
        InputPaddingMask.attach(transformer)


class InputPaddingMask:
    """The padding mask for UNetT's input convolution, which F5-TTS 1.1.22 does not give it.

    DiT's input embedding takes the mask (`audio_mask`) and zeroes the padding around
    its two 31-frame convolutions; UNetT's (unett.py) takes none, so in a padded batch
    a shorter item's last frames would see the padding through the convolutions' window
    and differ from its single run. This hands the transformer's `mask` argument to
    `ConvPositionEmbedding.forward(x, mask)`, DiT's way. Only calls with a mask change:
    single items (mask None) run upstream's code. What UNetT's text embedding does with
    padding is unchanged: without conv layers (every E2TTS config) it works frame by
    frame, so padding cannot reach an item's own frames.
    """

    def __init__(self) -> None:
        self._mask = threading.local()  # per thread, though the synthesizer's lock already keeps one call per model

    @classmethod
    def attach(cls, transformer: Any) -> None:
        """Hook onto `transformer` once, however many synthesizers share the model."""
        convolution = transformer.input_embed.conv_pos_embed
        if getattr(convolution, "f5b_padding_mask", None) is not None:
            return
        padding = cls()
        transformer.register_forward_pre_hook(padding._keep, with_kwargs=True)
        convolution.register_forward_pre_hook(padding._give, with_kwargs=True)
        convolution.f5b_padding_mask = padding

    def _keep(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._mask.value = kwargs.get("mask")

    def _give(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]] | None:
        mask = getattr(self._mask, "value", None)
        if mask is None:
            return None
        return args, {**kwargs, "mask": mask}


class PaddingMaskedAttention:
    """F5-TTS 1.1.22's `AttnProcessor.__call__` (torch backend, mask enabled) with a broadcast padding mask."""

    attn_mask_enabled = True

    def __init__(self, upstream: Any) -> None:
        self.upstream = upstream
        self.pe_attn_head: int | None = upstream.pe_attn_head

    def __call__(self, attn: Any, x: Any, mask: Any = None, rope: Any = None) -> Any:
        import torch.nn.functional as F

        if mask is None:
            return self.upstream(attn, x, mask=mask, rope=rope)
        batch_size = x.shape[0]
        query, key, value = (self._heads(attn, proj(x)) for proj in (attn.to_q, attn.to_k, attn.to_v))
        if attn.q_norm is not None:
            query = attn.q_norm(query)
        if attn.k_norm is not None:
            key = attn.k_norm(key)
        if rope is not None:
            query, key = self._rotate(query, key, rope)
        attn_mask = mask[:, None, None, :]  # upstream: .expand(batch_size, heads, frames, frames)
        x = F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=0.0, is_causal=False)
        x = x.transpose(1, 2).reshape(batch_size, -1, attn.heads * query.shape[-1])
        x = x.to(query.dtype)
        x = attn.to_out[1](attn.to_out[0](x))
        return x.masked_fill(~mask.unsqueeze(-1), 0.0)

    @staticmethod
    def _heads(attn: Any, projected: Any) -> Any:
        head_dim = projected.shape[-1] // attn.heads
        return projected.view(projected.shape[0], -1, attn.heads, head_dim).transpose(1, 2)

    def _rotate(self, query: Any, key: Any, rope: Any) -> tuple[Any, Any]:
        from f5_tts.model.modules import apply_rotary_pos_emb

        freqs, xpos_scale = rope
        q_xpos_scale, k_xpos_scale = (xpos_scale, xpos_scale**-1.0) if xpos_scale is not None else (1.0, 1.0)
        if self.pe_attn_head is None:
            return apply_rotary_pos_emb(query, freqs, q_xpos_scale), apply_rotary_pos_emb(key, freqs, k_xpos_scale)
        pn = self.pe_attn_head
        query[:, :pn, :, :] = apply_rotary_pos_emb(query[:, :pn, :, :], freqs, q_xpos_scale)
        key[:, :pn, :, :] = apply_rotary_pos_emb(key[:, :pn, :, :], freqs, k_xpos_scale)
        return query, key


CFG_BRANCHES = 2  # guidance runs cond and uncond as one doubled batch
ESTIMATE_MARGIN = 1.25  # allocator fragmentation, kernel workspaces and temporaries the count below leaves out


@dataclass(frozen=True)
class MemoryModel:
    """Accelerator bytes one item of a sampling call needs, from the transformer's shape.

    Layers run one after another and inference keeps no activations, so the peak
    is one block's working set, per frame and guidance branch (and, in UNetT, the
    first half's outputs its skip connections hold, dim each): the residual
    stream and its norm (4 x dim), queries, keys, values, rotary copies and the
    attention output (6 x heads x dim_head), the feed-forward hidden state and
    its activation (2 x ff width), and the cached text embedding. On top,
    torchdiffeq's solution buffer (steps + 1 mels per frame) and the noise.
    Attention adds nothing quadratic: the padding mask is broadcast
    (`PaddingMaskedAttention`) and the fused kernels never hold the scores. For
    F5TTS_v1_Base in fp16 at 32 steps: 83 MB per item of 1000 frames (~11 s).
    Should a kernel fall back to materialising scores, the out-of-memory
    back-off (`BatchLimit`) learns the real cost.
    """

    element: int
    per_frame: int
    mels: int

    @classmethod
    def of(cls, cfm: Any) -> MemoryModel:
        transformer = cfm.transformer
        attn, ff = _first_block(transformer)
        ff_width = ff.ff[0][0].out_features
        text_dim = transformer.text_embed.text_embed.embedding_dim
        # UNetT keeps its first half's outputs until the second half's skip connections take them.
        skips = len(getattr(transformer, "layers", ())) // 2
        per_frame = CFG_BRANCHES * ((4 + skips) * transformer.dim + 6 * attn.inner_dim + 2 * ff_width + text_dim)
        return cls(element=next(cfm.parameters()).element_size(), per_frame=per_frame, mels=cfm.num_channels)

    def item_bytes(self, frames: int, steps: int) -> int:
        values = frames * (self.per_frame + (steps + 2) * self.mels)
        return int(ESTIMATE_MARGIN * values * self.element)


def _first_block(transformer: Any) -> tuple[Any, Any]:
    """The attention and feed-forward of the first layer: DiT's `transformer_blocks`, or UNetT's `layers`
    (skip projection, attention norm, attention, feed-forward norm, feed-forward)."""
    if hasattr(transformer, "transformer_blocks"):
        block = transformer.transformer_blocks[0]
        return block.attn, block.ff
    _skip, _attn_norm, attn, _ff_norm, ff = transformer.layers[0]
    return attn, ff


BUCKET_FILL = 0.75  # a call's shortest item is at least this share of its longest, which bounds the padding
LIMIT_RECOVERY = 16  # after an out-of-memory, each call that fits raises the learned limit by 1/16


def bucket_size(durations: Sequence[int], cap: int) -> int:
    """How many of `durations` (longest first) go into the next call: up to `cap`, while padding stays bounded."""
    size = 1
    while size < min(cap, len(durations)) and durations[size] >= BUCKET_FILL * durations[0]:
        size += 1
    return size


class BatchLimit:
    """Items one sampling call may take: the configured most, what free accelerator memory allows, and the
    lower limit the last out-of-memory taught (estimates can be wrong, and other processes share the chip).

    The learned limit is in estimated bytes, not items, so that it carries over to calls of other lengths; it
    creeps back up while calls fit, because memory another process held may be free again.
    """

    def __init__(self, cfm: Any, most: int, memory_fraction: float) -> None:
        self.most = most
        self.memory_fraction = memory_fraction
        self.learned: int | None = None
        self._memory = MemoryModel.of(cfm)
        self._device = cfm.device

    def items(self, frames: int, steps: int) -> int:
        if self.most <= 1:
            return 1
        per_item = self._memory.item_bytes(frames, steps)
        budgets = [budget for budget in (self._free_bytes(), self.learned) if budget is not None]
        return min([self.most] + [max(1, budget // per_item) for budget in budgets])

    def ran_out(self, frames: int, steps: int, items: int) -> None:
        """A call of `items` items of `frames` did not fit: from now on, plan half as much."""
        self.learned = self._memory.item_bytes(frames, steps) * max(1, items // 2)

    def fitted(self) -> None:
        """A call fitted: let the learned limit creep back up."""
        if self.learned is not None:
            self.learned += self.learned // LIMIT_RECOVERY

    def _free_bytes(self) -> int | None:
        """Free device memory, counting what torch's caching allocator holds but does not use; None off CUDA."""
        import torch

        if self._device.type != "cuda":
            return None
        free, _total = torch.cuda.mem_get_info(self._device)
        cached = torch.cuda.memory_reserved(self._device) - torch.cuda.memory_allocated(self._device)
        return int((free + cached) * self.memory_fraction)
