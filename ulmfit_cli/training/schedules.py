"""Learning-rate schedules as pure functions of (step t, total steps T) -> multiplier of eta_max.

Each schedule registers itself in SCHEDULES with the `schedule.*` knobs only it reads (schedule.lr,
decay and discriminative apply to every one); its builder takes the `schedule` config.
"""
from __future__ import annotations

import math
from typing import Callable

from ..registry import Registry

Schedule = Callable[[int, int], float]
SCHEDULES = Registry("schedule")


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


@SCHEDULES.register("stlr", reads=("cut_frac", "ratio"))
def _stlr(cfg) -> Schedule:
    """Slanted triangular LR (paper eq. 3): linear rise over cut_frac of the steps from lr/ratio to lr,
    then linear decay back."""
    return lambda t, T: stlr(t, T, cfg.cut_frac, cfg.ratio)


@SCHEDULES.register("one_cycle", reads=("pct_start", "div", "div_final"))
def _one_cycle(cfg) -> Schedule:
    """fastai's fit_one_cycle: cosine warm-up over pct_start from lr/div, cosine anneal to lr/div_final."""
    return lambda t, T: one_cycle(t, T, cfg.pct_start, cfg.div, cfg.div_final)


@SCHEDULES.register("constant")
def _constant(cfg) -> Schedule:
    """One learning rate throughout."""
    return constant


@SCHEDULES.register("slanted_cosine", reads=("cut_frac", "ratio"))
def slanted_cosine(cfg) -> Schedule:
    """STLR's linear warm-up from lr/ratio to lr over cut_frac of the steps, then a cosine decay back
    to lr/ratio.

    eta_t = eta_max * (1 + p * (ratio - 1)) / ratio, with cut = floor(T * cut_frac) and p = t / cut
    for t < cut (the warm-up of STLR, Howard & Ruder 2018, eq. 3), else
    p = (1 + cos(pi * (t - cut) / (T - cut))) / 2 (cosine annealing, Loshchilov & Hutter 2017, eq. 5).
    """
    cut_frac, ratio = float(cfg.cut_frac), float(cfg.ratio)

    def schedule(t: int, T: int) -> float:
        cut = max(math.floor(T * cut_frac), 1)
        p = t / cut if t < cut else (1 + math.cos(math.pi * min((t - cut) / max(T - cut, 1), 1.0))) / 2
        return (1 + p * (ratio - 1)) / ratio

    return schedule


def ignored_knobs(cfg, keys: set[str]) -> list[tuple[str, str]]:
    """(knob, the fix) for each `schedule.<knob>` in `keys` that `cfg` does not read."""
    out = SCHEDULES.ignored_knobs(cfg.name, keys)
    if "decay" in keys and not cfg.discriminative:
        out.append(("decay", "add schedule.discriminative=true to use it"))
    return out


def make_schedule(cfg) -> Schedule:
    """From the `schedule` config group."""
    return SCHEDULES[cfg.name].build(cfg)
