"""`ulmfit report DIR [DIR ...] [--out DIR] [--metric NAME] [--paper]`: tables (and plots) for runs.

DIR is a run dir, a multirun sweep dir (outputs/multirun/<stage>/<time>) or any folder of run
dirs (e.g. outputs/). Jobs still running (no summary.json yet) are listed as running. Prints one
table per stage (reporting/tables.py: short run names, the columns that vary, the best run per
figure marked with `*`), writes the same tables with full run paths to report.md, every column of
every run to report.csv (one row per run), and PNG plots, into --out (default: DIR/report/; for
several DIRs, report/ in the folder they share). With --paper, also paper.md: the paper's ablation
tables beside the runs tagged `tag=<table>/<variant>` (reporting/paper.py; studies/paper_study.py
makes such runs).
"""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import pandas as pd
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..errors import UserError
from ..reporting import plots
from ..reporting.paper import paper_report
from ..reporting.sweep import collect_runs
from ..reporting.tables import TIME, StageTable, has_value, stage_tables

SYNOPSIS = "ulmfit report DIR [DIR ...] [--out DIR] [--metric NAME] [--paper]"
BEST_NOTE = "best in its column (lowest error, perplexity, loss, time; top accuracy, F1)"
DEFAULT_METRICS = ["ensemble.val_error", "fwd.val_error", "bwd.val_error",
                   "fwd.val_perplexity", "bwd.val_perplexity", "fwd.val_loss", "bwd.val_loss"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ulmfit report", usage=SYNOPSIS, description=(
        "A table per stage (and plots) for run dirs, a multirun sweep dir, or a folder of run dirs."))
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
    if not has_value(v):
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def cell(row, column: str) -> str:
    return fmt(row[column], 3 if column == TIME else 4)


def mean_std(t: StageTable, mean, std, column: str) -> str:
    if column not in t.figures or not plots.finite(mean[column]):
        return fmt(mean[column])  # a setting all the seeds share
    return f"{cell(mean, column)} ± {fmt(std[column], 2)}"


def title(t: StageTable) -> str:
    n, ds = len(t.runs), t.constant.get("dataset")
    on = f" on {ds}" if ds is not None else ""
    return f"{t.stage or 'runs of no known stage'}{on}: {n} run{'s' * (n != 1)} ({t.counts()})"


def caption(t: StageTable) -> str | None:
    """The columns every run holds one value of, said once (the dataset is in the title)."""
    same = [f"{c}={fmt(v, 3 if c == TIME else 4)}" for c, v in t.constant.items() if c != "dataset"]
    if not same:
        return None
    return ("same for every run: " if len(t.runs) > 1 else "also: ") + ", ".join(same)


def has_status(t: StageTable) -> bool:
    return bool((t.runs["status"] != "ok").any())


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)


def markdown_section(t: StageTable) -> list[str]:
    """`## <stage> on <dataset>: N runs (...)`, then the table: the full run path, best values in bold."""
    status = ["status"] * has_status(t)
    header = ["run", *status, *t.columns]
    rows = []
    for i, (_, r) in enumerate(t.runs.iterrows()):
        vals = [f"**{cell(r, c)}**" if i in t.best.get(c, ()) else cell(r, c) for c in t.columns]
        rows.append([str(r["run_dir"]), *[r["status"]] * len(status), *vals])
    for name, mean, std in t.aggregates:
        rows.append([name, *[f"n={mean['n']}"] * len(status), *[mean_std(t, mean, std, c) for c in t.columns]])
    out = [f"## {title(t)}", ""]
    if line := caption(t):
        out += [line[0].upper() + line[1:] + ".", ""]
    out += [markdown_table(header, rows), ""]
    if failures := failures_of(t):
        out += [f"- {r} {status}: {e}" for r, status, e in failures] + [""]
    return out


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


def failures_of(t: StageTable) -> list[tuple[str, str, str]]:
    """("runs 3, 4", status, error) once per distinct error, so a sweep that failed 18 times says it
    once; runs stopped by a signal likewise (status "stopped"), with the resume= that continues them."""
    by_error: dict[tuple[str, str], list[str]] = {}
    for name, (_, r) in zip(t.names, t.runs.iterrows()):
        if r["status"] in ("failed", "stopped"):
            by_error.setdefault((str(r["status"]), str(r["error"])), []).append(name)
    return [(("run " if len(rs) == 1 else "runs ") + ", ".join(rs), status, e) for (status, e), rs in by_error.items()]


def short_name_of(tables: list[StageTable], run_dir) -> str:
    return next((n for t in tables for n, d in zip(t.names, t.runs["run_dir"]) if d == run_dir), str(run_dir))


def write_markdown(out: Path, dirs: list[Path], df: pd.DataFrame, metric: str | None, tables: list[StageTable],
                   made: list[Path]) -> None:
    best, counts = best_run(df, metric), ", ".join(f"{n} {s}" for s, n in df["status"].value_counts().items())
    md = ["# ulmfit report", "", f"Runs from: {', '.join(f'`{d}`' for d in dirs)} ({counts}).", ""]
    if metric:
        md.append(f"Metric: `{metric}` ({'lower' if plots.lower_is_better(metric) else 'higher'} is better)"
                  + (f"; best: run {best['run_dir']} = {fmt(best[metric])}." if best is not None else "."))
        md.append("")
    for t in tables:
        md += markdown_section(t)
    if any(t.best for t in tables):
        md += [f"Bold: {BEST_NOTE}.", ""]
    if made:
        md += ["## Plots", ""] + [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in made] + [""]
    md.append("All metrics of every run: `report.csv`.")
    (out / "report.md").write_text("\n".join(md) + "\n")


def console_header(column: str) -> str:
    """`fwd.val_error` on two lines (`fwd` over `val_error`), so the column is as narrow as its figure."""
    group, _, name = column.rpartition(".")
    return f"{group}\n{name}"


def console_table(t: StageTable, columns: list[str]) -> Table:
    """The runs of `t` with `columns` (after the run's name and, where some run did not finish, its status)."""
    status = ["status"] * has_status(t)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("\nrun", overflow="fold")
    for c in [*status, *columns]:
        table.add_column(console_header(c), justify="left" if c in ("status", "dataset") else "right", overflow="fold")
    for i, (name, (_, r)) in enumerate(zip(t.names, t.runs.iterrows())):
        cells = [Text(name), *[Text(r["status"])] * len(status)]
        for c in columns:
            if c not in t.best:
                cells.append(Text(cell(r, c)))
            else:  # the mark, not only the colour, so that it survives a log or a terminal without colour
                top = i in t.best[c]
                cells.append(Text(cell(r, c) + ("*" if top else " "), style="bold green" if top else ""))
        table.add_row(*cells, style={"failed": "red", "running": "yellow", "stopped": "yellow"}.get(r["status"]))
    for name, mean, std in t.aggregates:
        table.add_row(Text(name), *[Text(f"n={mean['n']}")] * len(status),
                      *[Text(mean_std(t, mean, std, c)) for c in columns])
    return table


def console_tables(t: StageTable, console: Console) -> list[Table]:
    """The stage's table, its columns split into blocks that each fit the terminal (every block
    repeats the run names), rather than columns squeezed until their figures break over lines."""
    blocks: list[list[str]] = [[]]
    unbounded = console.options.update(max_width=100_000)
    for c in t.columns:
        wide = console.measure(console_table(t, [*blocks[-1], c]), options=unbounded).maximum > console.width
        if blocks[-1] and wide:
            blocks.append([])
        blocks[-1].append(c)
    return [console_table(t, b) for b in blocks]


def print_console(df: pd.DataFrame, metric: str | None, tables: list[StageTable], out: Path, n_plots: int) -> None:
    console = Console(highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):  # a log or a pipe: room for the table
        console.width = max(console.width, 200)
    for t in tables:
        console.print(Text(title(t), style="bold"))
        for table in console_tables(t, console):
            console.print(table)
        if line := caption(t):
            console.print(Text(line))
        for r, status, e in failures_of(t):
            colour = "red" if status == "failed" else "yellow"
            console.print(f"[{colour}]{escape(r)} {status}:[/] {escape(e)}", markup=True)
        console.print()
    if any(t.best for t in tables):
        console.print(Text(f"* {BEST_NOTE}"))
    if (best := best_run(df, metric)) is not None:
        console.print(Text(f"best {metric}: run {short_name_of(tables, best['run_dir'])} = {fmt(best[metric])}"))
    console.print(Text(f"report.md, report.csv and {n_plots} plots in {out}"))


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
    first = ["run", "stage", "dataset", "status", "error", *df.attrs.get("keys", [])]
    full[[*first, *[c for c in full.columns if c not in first]]].to_csv(out / "report.csv", index=False)
    made = make_plots(df, out, metric)
    tables = stage_tables(df, aggs, metric)
    write_markdown(out, dirs, df, metric, tables, made)
    print_console(df, metric, tables, out, len(made))
    if args.paper:
        text = paper_report(df)
        (out / "paper.md").write_text(text)
        Console(highlight=False).print(Text(text))
        print(f"paper tables: {out / 'paper.md'}")
    return 0
