"""What `ulmfit report` puts in its tables, before any rendering: one table per stage.

Each stage records its own figures (an LM's perplexity, a classifier's errors), so one table for
every run would be mostly empty cells. A stage's table has:
- a short name per run: the run dir's time stamp (`12-07 01:21:19`), a sweep job's number, or
  more of either where that is needed to tell two runs apart (the full path stays in report.csv);
- the override keys that hold a value for some of its runs, then the figures of the run's own
  models (fwd, bwd, ensemble), then context figures (a baseline fitted on the same split, the LM
  under a classifier), then the wall time;
- for each column that holds one value for every run (the dataset, a baseline, the LM every job
  started from), that value said once under the table instead of repeated on every row;
- the best run of each figure, in the direction the figure is better (training/metrics.py
  declares it; time: lower), among finished runs, where at least two of them differ.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..training.metrics import higher_is_better
from .sweep import DIRECTION_ORDER, sweep_dir_of

STAGES = ("pretrain", "finetune-lm", "train-clf")
# The figures a table shows (report.csv has every one): validation and test scores.
SHOWN = ("val_error", "test_error", "val_perplexity", "val_loss", "val_f1_micro", "test_f1_micro")
TIME = "wall_time_s"
STAMP = re.compile(r"^(\d{4})-(\d\d-\d\d)_(\d\d)-(\d\d)-(\d\d)(?:-\d+)?$")  # Hydra's run and sweep dir names


@dataclass
class StageTable:
    stage: str | None
    runs: pd.DataFrame  # the stage's rows of collect_runs
    names: list[str]  # a short name per run
    columns: list[str]  # what varies between runs: keys, figures, wall time
    figures: list[str]  # the columns that are results (not settings): a mean ± std row averages them
    constant: dict[str, object] = field(default_factory=dict)  # column -> the one value every run holds
    best: dict[str, set[int]] = field(default_factory=dict)  # figure -> positions of the runs holding its best
    aggregates: list[tuple[str, pd.Series, pd.Series]] = field(default_factory=list)  # (name, mean, std) over seeds

    def counts(self) -> str:
        """`3 ok, 1 failed`."""
        return ", ".join(f"{n} {s}" for s, n in self.runs["status"].value_counts().items())


def stage_tables(df: pd.DataFrame, aggs: pd.DataFrame, metric: str | None = None) -> list[StageTable]:
    """One table per stage found in `df` (collect_runs), in pipeline order; `aggs` holds
    report.seed_aggregates' mean and std rows (alternating), each with its stage."""
    tables = []
    for stage in stage_order(df):
        runs = df[df["stage"] == stage] if stage is not None else df[df["stage"].isna()]
        runs = runs.reset_index(drop=True)
        names = short_names(runs)
        keys = [k for k in df.attrs.get("keys", []) if k in runs and runs[k].map(has_value).any()]
        if "seed" not in keys and runs["seed"].nunique(dropna=True) > 1:
            keys.append("seed")
        figures = shown_figures(runs, df.attrs.get("metrics", []), metric)
        ok = runs[runs["status"] == "ok"]  # a run that did not finish holds no figure
        constant = {c: runs[c].iloc[0] for c in keys if _one_value(runs[c])}
        datasets = runs["dataset"][runs["dataset"].map(has_value)]  # a job that failed early may not say
        if len(datasets) and _one_value(datasets):
            constant = {"dataset": datasets.iloc[0], **constant}
        constant |= {m: ok[m].iloc[0] for m in figures if not own_figure(m) and len(ok) and _one_value(ok[m])}
        columns = [c for c in [*keys, *figures, TIME] if c not in constant and runs[c].map(has_value).any()]
        if "dataset" not in constant and runs["dataset"].map(has_value).any():
            columns.insert(0, "dataset")
        best = {c: rows for c in columns if (rows := best_rows(runs, c))}
        tables.append(StageTable(stage, runs, names, columns, [*figures, TIME], constant, best,
                                 _aggregates(aggs, stage, runs, names)))
    return tables


def _one_value(values: pd.Series) -> bool:
    """Every run holds a value, and the same one."""
    return bool(values.map(has_value).all()) and values.astype(str).nunique() == 1


def best_rows(runs: pd.DataFrame, column: str) -> set[int]:
    """Positions of the finished runs holding the column's best value; none where it is not a score,
    fewer than two runs hold it, or they all hold the same value."""
    way = better(column)
    values = pd.to_numeric(runs[column], errors="coerce").where(runs["status"] == "ok")
    held = values.dropna()
    if way is None or len(held) < 2 or held.nunique() < 2:
        return set()
    top = held.min() if way == "min" else held.max()
    return {i for i, v in enumerate(values) if v == top}


def _aggregates(aggs: pd.DataFrame, stage, runs: pd.DataFrame, names: list[str]) -> list:
    if aggs.empty:
        return []
    ours = aggs[aggs["stage"] == stage] if stage is not None else aggs[aggs["stage"].isna()]
    label_to_name = dict(zip((str(r) for r in runs["run"]), names))
    out = []
    for i in range(0, len(ours) - 1, 2):
        mean, std = ours.iloc[i], ours.iloc[i + 1]
        members = [label_to_name.get(m, m) for m in str(mean["run"]).removeprefix("runs ").split(",")]
        out.append((f"mean±std ({', '.join(members)})", mean, std))
    return out


def has_value(v) -> bool:
    if v is None or v is pd.NA:
        return False
    return not (isinstance(v, float) and math.isnan(v))


def own_figure(name: str) -> bool:
    """A figure of the run's own model (`fwd.val_error`), not a baseline's or the LM's under it."""
    return name.split(".", 1)[0] in DIRECTION_ORDER


def better(name: str) -> str | None:
    """'min' or 'max' for a column whose best is marked; None for one that is not a score."""
    if name == TIME:
        return "min"
    high = higher_is_better(name)
    return None if high is None else ("max" if high else "min")


def stage_order(df: pd.DataFrame) -> list[str | None]:
    stages = list(dict.fromkeys(s if isinstance(s, str) else None for s in df["stage"]))
    return [s for s in STAGES if s in stages] + [s for s in stages if s not in STAGES]


def shown_figures(rows: pd.DataFrame, metrics: list[str], metric: str | None) -> list[str]:
    """The figures of SHOWN that some run holds: own ones first, then context. A loss is left out
    beside its perplexity (LMs: the same number on another scale) and beside a classifier's error."""
    held = [m for m in metrics if m.rsplit(".", 1)[-1] in SHOWN and rows[m].notna().any()]
    shown = [m for m in held if not (m.endswith("_loss") and {m[:-5] + "_perplexity", m[:-5] + "_error"} & set(held))]
    if metric and metric in rows and rows[metric].notna().any() and metric not in shown:
        shown.insert(0, metric)
    return [m for m in shown if own_figure(m)] + sorted((m for m in shown if not own_figure(m)), key=_context_order)


def _context_order(name: str):
    """`lm.fwd.val_perplexity` before `lm.bwd.val_perplexity`; otherwise the report's order (a stable sort)."""
    head, _, rest = name.partition(".")
    direction = rest.split(".", 1)[0]
    return head, DIRECTION_ORDER.index(direction) if direction in DIRECTION_ORDER else -1


def _stamp(name: str, year: bool) -> str | None:
    m = STAMP.match(name)
    if not m:
        return None
    return f"{m[1] + '-' if year else ''}{m[2]} {m[3]}:{m[4]}:{m[5]}"


def short_names(runs: pd.DataFrame) -> list[str]:
    """The shortest names that tell the runs apart: time stamps without the year and microseconds
    (with the year where the runs span years), else the report's own labels (unique by construction).
    A sweep's job is its number, with the sweep's time stamp where the runs come from several sweeps."""
    sweep_of = [sweep_dir_of(Path(d)) if has_value(job) else None for d, job in zip(runs["run_dir"], runs["job"])]
    stamped = [(s or Path(d)).name for s, d in zip(sweep_of, runs["run_dir"])]  # the dir whose time stamp names it
    year = len({m[1] for n in stamped for m in [STAMP.match(n)] if m}) > 1

    one_sweep = len(set(sweep_of) - {None}) == 1

    def name(r, sweep: Path | None, dir_name: str) -> str:
        if sweep is None:
            return _stamp(dir_name, year) or str(r["run"])
        return str(r["job"]) if one_sweep else f"{_stamp(dir_name, year) or dir_name}/{r['job']}"

    names = [name(r, s, n) for (_, r), s, n in zip(runs.iterrows(), sweep_of, stamped)]
    return names if len(set(names)) == len(names) else [str(r) for r in runs["run"]]
