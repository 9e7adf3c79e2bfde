"""`ulmfit report DIR [DIR ...] [--out DIR] [--metric NAME] [--paper]`: one table (and plots) for runs.

DIR is a run dir, a multirun sweep dir (outputs/multirun/<stage>/<time>) or any folder of run
dirs (e.g. outputs/). Jobs still running (no summary.json yet) are listed as running. Writes
report.csv, report.md and PNG plots into --out (default: DIR/report/; for several DIRs, report/
in the folder they share). With --paper, also paper.md: the paper's ablation tables beside the
runs tagged `tag=<table>/<variant>` (reporting/paper.py; scripts/paper_study.py makes such runs).
"""
from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..errors import UserError
from ..reporting import plots
from ..reporting.paper import paper_report
from ..reporting.sweep import collect_runs

SYNOPSIS = "ulmfit report DIR [DIR ...] [--out DIR] [--metric NAME] [--paper]"
DEFAULT_METRICS = ["ensemble.val_error", "fwd.val_error", "bwd.val_error",
                   "fwd.val_perplexity", "bwd.val_perplexity", "fwd.val_loss", "bwd.val_loss"]
# Shown in the terminal / markdown table (report.csv has every metric).
SHOWN = ("val_error", "test_error", "val_perplexity", "val_loss")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ulmfit report", usage=SYNOPSIS, description=(
        "One table (and plots) for run dirs, a multirun sweep dir, or a folder of run dirs."))
    p.add_argument("dirs", nargs="+", metavar="DIR", help="run dir, sweep dir (outputs/multirun/<stage>/<time>) or folder of runs")
    p.add_argument("--out", metavar="DIR", help="where report.csv, report.md and the PNGs go (default: DIR/report; for several DIRs, "
                   "report/ in the folder they share, not inside one of the runs)")
    p.add_argument("--metric", metavar="NAME",
                   help="metric for the sweep plot and 'best' (e.g. fwd.val_accuracy, test_error); "
                        "default: the validation error (classifiers) or perplexity (LMs)")
    p.add_argument("--paper", action="store_true",
                   help="also render the paper's Tables 4-6 and Figure 3 (paper.md) from runs tagged "
                        "tag=<table>/<variant>, mean ± std over seeds beside the paper's figures")
    return p


def choose_metric(df: pd.DataFrame, name: str | None) -> str | None:
    metrics = [m for m in df.attrs.get("metrics", []) if df[m].notna().any()]
    if name is None:
        return next((m for m in DEFAULT_METRICS if m in metrics), metrics[0] if metrics else None)
    if name in df.attrs.get("metrics", []):
        return name
    matches = [m for m in metrics if m.split(".", 1)[-1] == name]
    if matches:
        return next((m for m in matches if m.startswith("ensemble.")), matches[0])
    raise UserError(f"--metric {name}: no run has that metric.",
                    f"Use one of: {', '.join(metrics) or '(no finished run yet)'} "
                    "(or just the part after the dot, e.g. test_error).")


def seed_aggregates(df: pd.DataFrame) -> pd.DataFrame:
    """mean and std rows for finished runs whose overrides are the same but for seed=."""
    metrics = df.attrs.get("metrics", [])
    ok = df[df["status"] == "ok"].copy()
    if ok.empty:
        return pd.DataFrame(columns=[*df.columns, "aggregate", "n"])
    ok["_group"] = [re.sub(r"(?:^|\s)[+~]*seed=\S+", "", str(o)).strip() for o in ok["overrides"]]
    rows = []
    for (stage, _), g in ok.groupby(["stage", "_group"], sort=False, dropna=False):
        if len(g) < 2 or g["seed"].nunique(dropna=True) < 2:
            continue
        base = {c: (g[c].iloc[0] if g[c].nunique(dropna=False) == 1 else None) for c in df.columns}
        base.update({"run": "runs " + ",".join(map(str, g["run"])), "status": "ok", "error": None,
                     "seed": ",".join(map(str, g["seed"])), "n": len(g), "run_dir": None})
        for agg in ("mean", "std"):
            r = dict(base, aggregate=agg)
            for m in [*metrics, "wall_time_s"]:
                r[m] = getattr(g[m], agg)()
            rows.append(r)
    return pd.DataFrame(rows, columns=[*df.columns, "aggregate", "n"])


def fmt(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def display_columns(df: pd.DataFrame, metric: str | None) -> tuple[list[str], list[str]]:
    keys = list(df.attrs.get("keys", []))
    if "seed" not in keys and df["seed"].nunique(dropna=True) > 1:
        keys.append("seed")
    metrics = [m for m in df.attrs.get("metrics", []) if m.rsplit(".", 1)[-1] in SHOWN and df[m].notna().any()]
    lm_only = all(s != "train-clf" for s in df["stage"].dropna())
    if not lm_only:  # a classifier's val_loss adds little next to its error
        metrics = [m for m in metrics if not m.endswith("_loss")]
    if metric and metric not in metrics:
        metrics.insert(0, metric)
    return keys, metrics[:9]


def table_rows(df: pd.DataFrame, aggs: pd.DataFrame, keys: list[str], metrics: list[str]) -> list[list[str]]:
    rows = []
    for _, r in df.iterrows():
        rows.append([str(r["run"]), fmt(r["stage"]), fmt(r["dataset"]), r["status"], *[fmt(r[k]) for k in keys],
                     *[fmt(r[m]) for m in metrics], fmt(r["wall_time_s"], 3)])
    for i in range(0, len(aggs), 2):
        mean, std = aggs.iloc[i], aggs.iloc[i + 1]
        pm = lambda c, d=4: f"{fmt(mean[c], d)} ± {fmt(std[c], 2)}" if plots.finite(mean[c]) else ""
        rows.append([f"mean±std ({mean['run']})", fmt(mean["stage"]), fmt(mean["dataset"]), f"n={mean['n']}",
                     *[fmt(mean[k]) if k != "seed" else mean["seed"] for k in keys],
                     *[pm(m) for m in metrics], pm("wall_time_s", 3)])
    return rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)


def best_run(df: pd.DataFrame, metric: str | None):
    if not metric or metric not in df:
        return None
    ok = df[(df["status"] == "ok") & df[metric].notna()]
    if ok.empty:
        return None
    return ok.loc[ok[metric].idxmin() if plots.lower_is_better(metric) else ok[metric].idxmax()]


def make_plots(df: pd.DataFrame, out: Path, metric: str | None) -> list[Path]:
    runs = [(str(r["run"]), Path(r["run_dir"])) for _, r in df.iterrows()]
    keys = df.attrs.get("keys", [])
    curves = out / "curves"
    curves.mkdir(exist_ok=True)
    made = []
    for _, r in df.iterrows():
        label = ", ".join(f"{k}={r[k]}" for k in keys if isinstance(r[k], str)) or str(r["overrides"])[:120]
        made.append(plots.plot_curves(Path(r["run_dir"]), f"run {r['run']} ({r['status']}): {label}",
                                      curves / f"{plots.safe_name(r['run'])}.png"))
    if len(runs) > 1:
        made.append(plots.plot_valid_overlay(runs, out / "valid_loss.png"))
    if metric:
        made.append(plots.plot_sweep(df, metric, keys, out / f"sweep_{plots.safe_name(metric)}.png"))
    made.append(plots.plot_lr(runs, out / "lr_schedule.png"))
    return [p for p in made if p]  # None: nothing to plot


def load_runs(dirs: list[Path]) -> pd.DataFrame:
    df = collect_runs(dirs)  # a path that does not exist is a UserError there
    if df.empty:
        raise UserError(f"No run directories under {', '.join(map(str, dirs))} (none holds summary.json, "
                        "metrics.csv, config.yaml or .hydra/overrides.yaml).",
                        "Pass a run dir (outputs/<stage>/<time>), a sweep dir (outputs/multirun/<stage>/<time>) "
                        "or a folder of run dirs.")
    return df


def failures_of(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    """("runs 3, 4", status, error) once per distinct error, so a sweep that failed 18 times says it
    once; runs stopped by a signal likewise (status "stopped"), with the resume= that continues them."""
    by_error: dict[tuple[str, str], list[str]] = {}
    for _, r in df[df["status"].isin(["failed", "stopped"])].iterrows():
        by_error.setdefault((str(r["status"]), str(r["error"])), []).append(str(r["run"]))
    return [(("run " if len(rs) == 1 else "runs ") + ", ".join(rs), status, e) for (status, e), rs in by_error.items()]


def write_markdown(out: Path, dirs: list[Path], df: pd.DataFrame, metric: str | None, header: list[str],
                   rows: list[list[str]], made: list[Path]) -> None:
    best, counts = best_run(df, metric), ", ".join(f"{n} {s}" for s, n in df["status"].value_counts().items())
    md = ["# ulmfit report", "", f"Runs from: {', '.join(f'`{d}`' for d in dirs)} ({counts}).", ""]
    if metric:
        md.append(f"Metric: `{metric}` ({'lower' if plots.lower_is_better(metric) else 'higher'} is better)"
                  + (f"; best: run {best['run']} = {fmt(best[metric])}." if best is not None else "."))
        md.append("")
    md += [markdown_table(header, rows), ""]
    if failures := failures_of(df):
        md += ["## Failed and stopped runs", ""] + [f"- {r} {status}: {e}" for r, status, e in failures] + [""]
    if made:
        md += ["## Plots", ""] + [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in made] + [""]
    md.append("All metrics of every run: `report.csv`.")
    (out / "report.md").write_text("\n".join(md) + "\n")


def print_console(df: pd.DataFrame, metric: str | None, header: list[str], rows: list[list[str]], shown: list[str],
                  out: Path, n_plots: int) -> None:
    console = Console(highlight=False)
    if not console.is_terminal:  # a log or a pipe: no need to squeeze the table into 80 columns
        console.width = max(console.width, 200)
    counts = ", ".join(f"{n} {s}" for s, n in df["status"].value_counts().items())
    table = Table(title=f"{len(df)} runs ({counts})", title_justify="left")
    for h in header:
        table.add_column(h, justify="right" if h in shown or h == "wall_time_s" else "left",
                         style="bold" if h == metric else None, overflow="fold")
    status = header.index("status")
    for r in rows:
        style = {"failed": "red", "running": "yellow", "stopped": "yellow"}.get(r[status])
        table.add_row(*(Text(c) for c in r), style=style)
    console.print(table)
    for r, status, e in failures_of(df):
        console.print(f"[{'red' if status == 'failed' else 'yellow'}]{escape(r)} {status}:[/] {escape(e)}", markup=True)
    if (best := best_run(df, metric)) is not None:
        console.print(Text(f"best {metric}: run {best['run']} = {fmt(best[metric])}"))
    console.print(Text(f"report: {out / 'report.md'}, {out / 'report.csv'} and {n_plots} plots in {out}"))


def default_out(dirs: list[Path]) -> Path:
    """DIR/report for one DIR; for several, report/ in their shared folder, so that a report on two
    seeds' runs is not written into the first one's run dir."""
    if len(dirs) == 1:
        return dirs[0] / "report"
    try:
        return Path(os.path.commonpath([str(d) for d in dirs])) / "report"
    except ValueError:  # relative and absolute paths mixed
        return Path(os.path.commonpath([str(d.resolve()) for d in dirs])) / "report"


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    dirs = [Path(d) for d in args.dirs]
    df = load_runs(dirs)
    metric = choose_metric(df, args.metric)
    out = Path(args.out) if args.out else default_out(dirs)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"Cannot create the report directory {out}: {e.strerror}.", "Pass --out DIR somewhere writable.")
    aggs = seed_aggregates(df)
    full = pd.concat([df.assign(aggregate=None, n=1), aggs], ignore_index=True) if len(aggs) else \
        df.assign(aggregate=None, n=1)
    keys, shown = display_columns(df, metric)
    first = ["run", "stage", "dataset", "status", "error", *keys]
    full[[*first, *[c for c in full.columns if c not in first]]].to_csv(out / "report.csv", index=False)
    made = make_plots(df, out, metric)
    header = ["run", "stage", "dataset", "status", *keys, *shown, "wall_time_s"]
    rows = table_rows(df, aggs, keys, shown)
    write_markdown(out, dirs, df, metric, header, rows, made)
    print_console(df, metric, header, rows, shown, out, len(made))
    if args.paper:
        text = paper_report(df)
        (out / "paper.md").write_text(text)
        Console(highlight=False).print(Text(text))
        print(f"paper tables: {out / 'paper.md'}")
    return 0
