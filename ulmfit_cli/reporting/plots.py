"""PNG plots for `ulmfit report` (matplotlib, Agg backend: no display needed).

- curves: training/validation loss and accuracy (perplexity for LMs) per epoch, from metrics.csv;
- sweep: the final metric against each swept knob;
- LR schedule: the top layer group's learning rate, recomputed step by step from the run's
  config.yaml (schedule, unfreezing phases) with ulmfit_cli.training.schedules, with the values
  metrics.csv logged at each epoch's last step on top.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from ..training.metrics import higher_is_better
from ..training.param_groups import unfreeze_plan
from ..training.schedules import make_schedule


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def safe_name(label: str) -> str:
    return re.sub(r"[^-\w.]+", "_", str(label)).strip("_") or "run"


def read_metrics(run_dir: Path) -> pd.DataFrame | None:
    path = Path(run_dir) / "metrics.csv"
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.EmptyDataError, pd.errors.ParserError):
        return None
    return df if len(df) else None


def numeric_or_none(values) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


# -- loss / accuracy curves ----------------------------------------------------------------------
def plot_curves(run_dir: Path, title: str, path: Path) -> Path | None:
    """Loss (train, valid) and valid accuracy / perplexity against epoch, one line per direction."""
    m = read_metrics(run_dir)
    if m is None:
        return None
    m = m[m["split"].isin(["train", "valid"])]
    if m.empty:
        return None
    is_lm = m["perplexity"].notna().any()
    second = "perplexity" if is_lm else "accuracy"
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for direction, d in m.groupby("direction", sort=False):
        for split, style in (("train", "--"), ("valid", "-")):
            s = d[d["split"] == split]
            if s["loss"].notna().any():
                axes[0].plot(s["epoch"], s["loss"], style, marker="o", ms=3, label=f"{direction} {split}")
        v = d[d["split"] == "valid"]
        if v[second].notna().any():
            axes[1].plot(v["epoch"], v[second], "-", marker="o", ms=3, label=f"{direction} valid")
    axes[0].set(title="loss", xlabel="epoch")
    axes[1].set(title=f"validation {second}", xlabel="epoch")
    if is_lm:
        axes[1].set_yscale("log")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title, fontsize=9)
    return _save(plt, fig, path)


def plot_valid_overlay(runs: list[tuple[str, Path]], path: Path, max_runs: int = 40) -> Path | None:
    """Validation loss of every run (first direction) on one axis."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = 0
    for label, run_dir in runs[:max_runs]:
        m = read_metrics(run_dir)
        if m is None:
            continue
        v = m[m["split"] == "valid"]
        if v.empty:
            continue
        d = v[v["direction"] == v["direction"].iloc[0]]
        ax.plot(d["epoch"], d["loss"], marker="o", ms=3, label=label)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set(title="validation loss per run", xlabel="epoch", ylabel="loss")
    ax.grid(alpha=0.3)
    if drawn <= 12:
        ax.legend(fontsize=7)
    return _save(plt, fig, path)


# -- metric against each swept knob ----------------------------------------------------------------
def plot_sweep(df: pd.DataFrame, metric: str, keys: list[str], path: Path) -> Path | None:
    """One panel per swept key: every finished run's final `metric`, and the mean per value."""
    ok = df[(df["status"] == "ok") & df[metric].notna()] if metric in df else df.iloc[0:0]
    keys = [k for k in keys if k in df and df[k].nunique(dropna=True) > 1]
    if ok.empty or not keys:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        sub = ok[ok[key].notna()]
        raw = [str(v) for v in sub[key]]
        nums = numeric_or_none(raw)
        if nums is not None:
            x = np.array(nums)
            uniq = sorted(set(nums))
            ax.scatter(x, sub[metric], alpha=0.7, s=25)
            ax.plot(uniq, [sub[metric][x == u].mean() for u in uniq], "-", color="C1", label="mean")
            if len(uniq) > 2 and min(uniq) > 0 and max(uniq) / min(uniq) >= 20:
                ax.set_xscale("log")
            ax.set_xticks(uniq)
            ax.set_xticklabels([f"{u:g}" for u in uniq])
        else:
            cats = sorted(set(raw))
            pos = np.array([cats.index(r) for r in raw])
            ax.scatter(pos, sub[metric], alpha=0.7, s=25)
            ax.plot(range(len(cats)), [sub[metric][pos == i].mean() for i in range(len(cats))], "-", color="C1",
                    label="mean")
            ax.set_xticks(range(len(cats)))
            ax.set_xticklabels(cats, rotation=30, ha="right", fontsize=8)
        ax.set(xlabel=key, ylabel=metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{metric} against each swept setting ({len(ok)} finished runs)", fontsize=9)
    return _save(plt, fig, path)


# -- the learning-rate schedule ----------------------------------------------------------------------
def n_layer_groups_candidates(cfg) -> list[int]:
    n_layers = int(cfg.get("model", {}).get("n_layers", 3) or 3)
    guess = n_layers + 2 if cfg.get("stage") == "train-clf" else n_layers + 1  # clf: + head; LM: decoder joins emb
    return [guess] + [g for g in range(1, 12) if g != guess]


def lr_curve(run_dir: Path, direction: str | None = None):
    """The top layer group's LR at every step, as the training loop sets it, recomputed from config.yaml.

    Returns (steps 1..T, lrs, logged) where `logged` holds metrics.csv's (step, lr) at each epoch end
    of `direction` (the first one by default), or None when the run has no config or no finished epoch
    (steps per epoch are read from metrics.csv). LMs also scale each batch's LR by seq_len/bptt
    (variable BPTT), which the recomputed curve leaves out.
    """
    config_path = Path(run_dir) / "config.yaml"
    m = read_metrics(run_dir)
    if not config_path.exists() or m is None:
        return None
    cfg = OmegaConf.load(config_path)
    train = m[m["split"] == "train"]
    if train.empty:
        return None
    direction = direction or str(train["direction"].iloc[0])
    t = train[train["direction"] == direction].sort_values("epoch")
    if t.empty:
        return None
    first = t.iloc[0]
    n = int(round(float(first["step"]) / float(first["epoch"])))
    if n <= 0:
        return None
    epochs = int(cfg.train.epochs)
    logged_epochs = int(t["epoch"].max())
    finished = (Path(run_dir) / "summary.json").exists()
    phases = None
    for groups in n_layer_groups_candidates(cfg):
        plan = unfreeze_plan(cfg.unfreeze, groups, epochs)
        total = sum(p.epochs for p in plan)
        if (finished and total == logged_epochs) or (not finished and total >= logged_epochs):
            phases = plan
            break
    if phases is None:
        phases = unfreeze_plan(cfg.unfreeze, n_layer_groups_candidates(cfg)[0], epochs)
    schedule = make_schedule(cfg.schedule)
    lr = float(cfg.schedule.lr)
    lrs = []
    for phase in phases:
        total = phase.epochs * n
        lrs += [lr * schedule(i, total) for i in range(total)]
    steps = np.arange(1, len(lrs) + 1)
    logged = t[["step", "lr"]].dropna().to_numpy(dtype=float)
    return steps, np.array(lrs), logged


def schedule_signature(run_dir: Path) -> str | None:
    """Runs with the same schedule settings and steps share one curve in the plot."""
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(Path(run_dir) / "config.yaml")
    except OSError:
        return None
    return repr((OmegaConf.to_container(cfg.schedule), OmegaConf.to_container(cfg.unfreeze), cfg.train.epochs))


def plot_lr(runs: list[tuple[str, Path]], path: Path, max_curves: int = 12) -> Path | None:
    """Recomputed STLR / one-cycle / constant curve per distinct schedule, with metrics.csv's logged LRs."""
    curves: dict[tuple, tuple[list[str], object]] = {}
    for label, run_dir in runs:
        try:
            c = lr_curve(run_dir)
        except Exception:  # noqa: BLE001 - an odd config should not stop the report
            c = None
        if c is None:
            continue
        steps, lrs, logged = c
        sig = (schedule_signature(run_dir), len(steps), tuple(np.round(lrs[:: max(len(lrs) // 50, 1)], 12)))
        if sig in curves:
            curves[sig][0].append(label)
        else:
            curves[sig] = ([label], c)
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (labels, (steps, lrs, logged)) in enumerate(list(curves.values())[:max_curves]):
        color = f"C{i % 10}"
        name = ", ".join(labels[:4]) + (f" +{len(labels) - 4}" if len(labels) > 4 else "")
        ax.plot(steps, lrs, "-", color=color, lw=1.2, label=f"{name} (recomputed)")
        if len(logged):
            ax.plot(logged[:, 0], logged[:, 1], "o", color=color, ms=5, mfc="none", label=f"{name} (metrics.csv)")
    ax.set(title="learning rate of the top layer group", xlabel="training step", ylabel="lr")
    ax.grid(alpha=0.3)
    if len(curves) <= 6:
        ax.legend(fontsize=7)
    return _save(plt, fig, path)


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def lower_is_better(metric: str) -> bool:
    """As training/metrics.py declares (`fwd.val_error`: lower); a figure that is not a score: lower."""
    return higher_is_better(metric) is not True


def finite(v) -> bool:
    try:
        return v is not None and not math.isnan(float(v))
    except (TypeError, ValueError):
        return False
