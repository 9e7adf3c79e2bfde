"""Learning-rate schedules as pure functions of (step t, total steps T) -> multiplier of eta_max."""
from __future__ import annotations

import math
from typing import Callable

from ..errors import UserError

Schedule = Callable[[int, int], float]


def stlr(t: int, T: int, cut_frac: float = 0.1, ratio: float = 32.0) -> float:
    """Slanted triangular LR (Howard & Ruder 2018, eq. 3), as a fraction of eta_max.

    1/ratio at t=0, 1 at t=cut=floor(T*cut_frac), back to 1/ratio at t=T.
    """
    cut = max(math.floor(T * cut_frac), 1)
    if t < cut:
        p = t / cut
    else:
        p = 1 - (t - cut) / (cut * (1 / cut_frac - 1))
    p = min(max(p, 0.0), 1.0)
    return (1 + p * (ratio - 1)) / ratio


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


def one_cycle(t: int, T: int, pct_start: float = 0.25, div: float = 25.0, div_final: float = 1e5) -> float:
    """fastai's fit_one_cycle: cosine warm-up from 1/div to 1, cosine anneal to 1/div_final."""
    warm = max(int(T * pct_start), 1)
    if t < warm:
        return _cos(1 / div, 1.0, t / warm)
    return _cos(1.0, 1 / div_final, min((t - warm) / max(T - warm, 1), 1.0))


def constant(t: int, T: int) -> float:
    return 1.0


# The knobs only some schedules read; schedule.lr, decay and discriminative apply to every one.
READ_BY = {"cut_frac": ("stlr",), "ratio": ("stlr",), "pct_start": ("one_cycle",), "div": ("one_cycle",),
           "div_final": ("one_cycle",)}


def ignored_knobs(cfg, keys: set[str]) -> list[tuple[str, str]]:
    """(knob, the fix) for each `schedule.<knob>` in `keys` that `cfg` does not read."""
    out = [(k, f"add schedule={READ_BY[k][0]} to use it") for k in sorted(keys & READ_BY.keys())
           if cfg.name not in READ_BY[k]]
    if "decay" in keys and not cfg.discriminative:
        out.append(("decay", "add schedule.discriminative=true to use it"))
    return out


def make_schedule(cfg) -> Schedule:
    """From the `schedule` config group."""
    if cfg.name == "stlr":
        return lambda t, T: stlr(t, T, cfg.cut_frac, cfg.ratio)
    if cfg.name == "one_cycle":
        return lambda t, T: one_cycle(t, T, cfg.pct_start, cfg.div, cfg.div_final)
    if cfg.name == "constant":
        return constant
    raise UserError(
        f"Unknown schedule.name '{cfg.name}'.",
        "Use schedule=stlr, schedule=one_cycle or schedule=constant.",
    )
