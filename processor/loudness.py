"""One loudness for every job: ITU-R BS.1770-4 integrated loudness (pyloudnorm), one gain, a true-peak ceiling.

The gain brings the whole job to its target; where that would put the true peak, measured on the signal
oversampled 4x (BS.1770-4 annex 2), above the ceiling, the gain is lowered until it does not: the audio then
comes out quieter than the target, and says so (`limited_by_ceiling`). Nothing is ever clipped or limited
sample by sample, so the speech keeps its shape. Audio under one 400 ms gating block cannot be measured, and
silence has no loudness (-inf LUFS): both are left exactly as they are, and the report says why (`skipped`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, ValidationError, ValidatorFunctionWrapHandler, WrapValidator
from pydantic_core import PydanticCustomError

from processor.results import LoudnessReport

MIN_LUFS, MAX_LUFS = -40.0, -5.0
DEFAULT_CEILING_DBTP = -1.0  # EBU R128's
OVERSAMPLING = 4
BLOCK_S = 0.4  # BS.1770's gating block: pyloudnorm refuses anything shorter
PresetName = Literal["ebu-r128", "podcast", "acx"]
# Target LUFS and true-peak ceiling per preset. ACX asks for RMS -23 to -18 dB and peaks at -3 dBFS: -19 LUFS
# lands speech inside that window.
PRESETS: dict[str, tuple[float, float]] = {"ebu-r128": (-23.0, -1.0), "podcast": (-16.0, -1.0), "acx": (-19.0, -3.0)}
Lufs = Annotated[float, Field(ge=MIN_LUFS, le=MAX_LUFS, allow_inf_nan=False)]


def _one_problem(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """One problem in words for a bad value, not one per alternative of the union."""
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError("loudness", "must be a number of LUFS from {low} to {high}, or ebu-r128, podcast or "
                                              "acx", {"low": MIN_LUFS, "high": MAX_LUFS}) from None


LoudnessValue = Annotated[Lufs | PresetName, WrapValidator(_one_problem)]  # a manifest's "loudness", F5B_LOUDNESS
LOUDNESS_DESCRIPTION = ("Integrated loudness of the output in LUFS (-40 to -5, ITU-R BS.1770-4), or a preset: "
                        "ebu-r128 (-23), podcast (-16), acx (-19, true peak -3).")


@dataclass(frozen=True)
class Target:
    lufs: float
    ceiling_dbtp: float


def target_for(loudness: float | str | None, true_peak_db: float | None,
               fleet_default: float | str | None = None) -> Target | None:
    """The job's target: its manifest's loudness, else the worker's F5B_LOUDNESS; None: the audio as made."""
    chosen = loudness if loudness is not None else fleet_default
    if chosen is None:
        return None
    lufs, ceiling = PRESETS[chosen] if isinstance(chosen, str) else (float(chosen), DEFAULT_CEILING_DBTP)
    return Target(lufs, ceiling if true_peak_db is None else true_peak_db)


def integrated_lufs(wave: np.ndarray, rate: int) -> float:
    import pyloudnorm

    return float(pyloudnorm.Meter(rate).integrated_loudness(np.asarray(wave, dtype=np.float64)))


def true_peak_dbtp(wave: np.ndarray, rate: int) -> float:
    """The highest of the samples and of the signal oversampled 4x with soxr, in dB of full scale."""
    import soxr

    oversampled = soxr.resample(np.asarray(wave, dtype=np.float32), rate, rate * OVERSAMPLING, quality="HQ")
    peak = max(float(np.max(np.abs(wave), initial=0.0)), float(np.max(np.abs(oversampled), initial=0.0)))
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def normalize(wave: np.ndarray, rate: int, target_lufs: float,
              ceiling_dbtp: float) -> tuple[np.ndarray, LoudnessReport]:
    """`wave` at `target_lufs`, its true peak at or below `ceiling_dbtp`, by one gain; the measurements."""
    skipped: Literal["too_short", "silent"] | None = None
    before_peak = true_peak_dbtp(wave, rate)
    before = integrated_lufs(wave, rate) if len(wave) >= BLOCK_S * rate else None
    if before is None:
        skipped = "too_short"
    elif not math.isfinite(before) or not math.isfinite(before_peak):
        before, skipped = None, "silent"
    if skipped is not None:
        peak = _db(before_peak)
        return wave, LoudnessReport(target_lufs=target_lufs, true_peak_ceiling_db=ceiling_dbtp, before_lufs=None,
                                    after_lufs=None, before_true_peak_db=peak, after_true_peak_db=peak, gain_db=0.0,
                                    limited_by_ceiling=False, skipped=skipped)
    assert before is not None
    gain = target_lufs - before
    limited = before_peak + gain > ceiling_dbtp
    if limited:
        gain = ceiling_dbtp - before_peak
    out, after_peak = _scaled(wave, gain, rate, ceiling_dbtp)
    return out, LoudnessReport(
        target_lufs=target_lufs, true_peak_ceiling_db=ceiling_dbtp, before_lufs=round(before, 2),
        after_lufs=round(integrated_lufs(out, rate), 2), before_true_peak_db=_db(before_peak),
        after_true_peak_db=_db(after_peak), gain_db=round(gain, 3), limited_by_ceiling=limited, skipped=None)


def _scaled(wave: np.ndarray, gain_db: float, rate: int, ceiling_dbtp: float) -> tuple[np.ndarray, float]:
    """The gain applied in float32, and the true peak after it. Rounding can lift a peak a hair over the
    ceiling: a second, tiny reduction takes it back (the true peak scales with the gain, the resampler being
    linear)."""
    out = (wave * np.float32(10 ** (gain_db / 20))).astype(np.float32)
    peak = true_peak_dbtp(out, rate)
    if (over := peak - ceiling_dbtp) > 0:
        out = (out * np.float32(10 ** (-(over + 1e-4) / 20))).astype(np.float32)
        peak = true_peak_dbtp(out, rate)
    return out, peak


def _db(value: float) -> float | None:
    return round(value, 2) if math.isfinite(value) else None
