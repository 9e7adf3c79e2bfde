"""The paper's ablation tables beside a study's runs: `ulmfit report --paper DIR...`.

Howard & Ruder (2018) report validation error (%) per variant in Table 4 (pretraining), Table 5
(LM fine-tuning) and Table 6 (classifier fine-tuning); Figure 3 plots error against the number of
labelled examples. A study (studies/paper_study.py) tags each run `tag=<table>/<variant>` (a
comma-separated list when one run is a row of several tables, as full ULMFiT is); here
the runs of one tag are averaged over seeds and set beside the paper's figure, with a column
saying whether the variant moves the error the way the paper's does, relative to the table's
reference row (full ULMFiT).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

# Validation error (%) per dataset, from the paper (ULMFIT.md; Table 6 from the paper's own table).
PAPER_TABLES = {
    "table4": ("Table 4: pretraining", "with_pretraining", [
        ("without_pretraining", "Without pretraining", {"imdb": 5.63, "trec6": 10.67, "ag_news": 5.52}),
        ("with_pretraining", "With pretraining", {"imdb": 5.00, "trec6": 5.69, "ag_news": 5.38}),
    ]),
    "table5": ("Table 5: LM fine-tuning", "lm_ft_discr_stlr", [
        ("lm_ft_none", "No LM fine-tuning", {"imdb": 6.99, "trec6": 6.38, "ag_news": 6.09}),
        ("lm_ft_full", "Full", {"imdb": 5.86, "trec6": 6.54, "ag_news": 5.61}),
        ("lm_ft_discr", "Full + discr", {"imdb": 5.55, "trec6": 6.36, "ag_news": 5.47}),
        ("lm_ft_discr_stlr", "Full + discr + stlr", {"imdb": 5.00, "trec6": 5.69, "ag_news": 5.38}),
    ]),
    "table6": ("Table 6: classifier fine-tuning", "clf_freez_discr_stlr", [
        ("clf_from_scratch", "From scratch", {"imdb": 9.93, "trec6": 13.36, "ag_news": 6.81}),
        ("clf_full", "Full", {"imdb": 6.87, "trec6": 6.86, "ag_news": 5.81}),
        ("clf_full_discr", "Full + discr", {"imdb": 5.57, "trec6": 6.21, "ag_news": 5.62}),
        ("clf_last", "Last", {"imdb": 6.49, "trec6": 16.09, "ag_news": 8.38}),
        ("clf_chain_thaw", "Chain-thaw", {"imdb": 5.39, "trec6": 6.71, "ag_news": 5.90}),
        ("clf_freez", "Freez", {"imdb": 6.37, "trec6": 6.86, "ag_news": 5.81}),
        ("clf_freez_discr", "Freez + discr", {"imdb": 5.39, "trec6": 5.86, "ag_news": 6.04}),
        ("clf_freez_stlr", "Freez + stlr", {"imdb": 5.04, "trec6": 6.02, "ag_news": 5.35}),
        ("clf_freez_cos", "Freez + cos", {"imdb": 5.70, "trec6": 6.38, "ag_news": 5.29}),
        ("clf_freez_discr_stlr", "Freez + discr + stlr", {"imdb": 5.00, "trec6": 5.69, "ag_news": 5.38}),
    ]),
}


@dataclass
class Cell:
    mean: float
    std: float
    n: int

    def __str__(self) -> str:
        if self.n == 0 or math.isnan(self.mean):
            return ""
        return f"{self.mean:.2f} ± {self.std:.2f} (n={self.n})" if self.n > 1 else f"{self.mean:.2f} (n=1)"


def cell(values: pd.Series) -> Cell:
    v = pd.to_numeric(values, errors="coerce").dropna()
    return Cell(float(v.mean()) if len(v) else math.nan, float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v))


def direction(ours: Cell, ref: Cell, paper: float | None, paper_ref: float | None) -> str:
    """Does the variant move the error the paper's way, relative to the reference row?"""
    if paper is None or paper_ref is None or ours.n == 0 or ref.n == 0 or paper == paper_ref:
        return ""
    same = (ours.mean - ref.mean) * (paper - paper_ref) > 0
    noise = abs(ours.mean - ref.mean) <= max(ours.std, ref.std)
    return ("yes" if same else "no") + (" (within one std)" if noise else "")


def tagged(df: pd.DataFrame) -> pd.DataFrame:
    """Finished runs, one row per tag they carry."""
    ok = df[(df["status"] == "ok") & df["tag"].notna()].copy()
    ok["tag"] = ok["tag"].astype(str).str.split(",")
    return ok.explode("tag")


def paper_table(df: pd.DataFrame, table: str, dataset: str, metric: str, test_metric: str | None) -> str:
    """One Markdown table: a row per variant, ours (mean ± std over seeds) beside the paper's."""
    title, reference, rows = PAPER_TABLES[table]
    ok = tagged(df)
    by_tag = {tag: g for tag, g in ok.groupby("tag")}
    cells = {key: cell(by_tag.get(f"{table}/{key}", pd.DataFrame({metric: []}))[metric]) for key, _, _ in rows}
    tests = {key: cell(by_tag[f"{table}/{key}"][test_metric]) if test_metric and f"{table}/{key}" in by_tag
             and test_metric in by_tag[f"{table}/{key}"] else Cell(math.nan, 0, 0) for key, _, _ in rows}
    ref_label = next(label for key, label, _ in rows if key == reference)
    paper_ref = dict((k, p.get(dataset)) for k, _, p in rows)[reference]
    lines = [f"**{title}** ({dataset}; `{metric}`, mean ± std over seeds)", "",
             f"| variant | ours: validation error % | ours: test error % | paper: validation error % | "
             f"direction vs {ref_label} matches the paper |", "|---|---|---|---|---|"]
    for key, label, paper in rows:
        lines.append(f"| {label} | {cells[key]} | {tests[key]} | {paper.get(dataset, '')} | "
                     f"{direction(cells[key], cells[reference], paper.get(dataset), paper_ref)} |")
    return "\n".join(lines)


def lowshot_table(df: pd.DataFrame, metric: str) -> str:
    """Figure 3's comparison: per number of labels n, ULMFiT and from scratch, the gap, and the
    paper's claim that ULMFiT on n labels matches from scratch on 10n (where the study has 10n)."""
    ok = tagged(df)
    ok = ok[ok["tag"].str.startswith("figure3/")]
    parts = ok["tag"].str.split("/", expand=True) if len(ok) else pd.DataFrame(columns=[0, 1, 2])
    shots = sorted({int(x) for x in parts[1]} if len(ok) else [])
    cells = {(n, m): cell(ok[(parts[1] == str(n)) & (parts[2] == m)][metric]) for n in shots for m in ("ulmfit", "scratch")}
    lines = [f"**Figure 3: low-shot** (`{metric}`, mean ± std over seeds)", "",
             "| labels | ULMFiT | from scratch | gap (points) | from scratch on 10x the labels | "
             "ULMFiT matches it (the paper: yes) |", "|---|---|---|---|---|---|"]
    for n in shots:
        ours, scratch = cells[n, "ulmfit"], cells[n, "scratch"]
        gap = f"{scratch.mean - ours.mean:.1f}" if ours.n and scratch.n else ""
        tenfold = cells.get((10 * n, "scratch"), Cell(math.nan, 0, 0))
        matches = ""
        if ours.n and tenfold.n:
            matches = "yes" if ours.mean <= tenfold.mean + max(ours.std, tenfold.std) else "no"
        lines.append(f"| {n} | {ours} | {scratch} | {gap} | {tenfold} | {matches} |")
    return "\n".join(lines)


def paper_report(df: pd.DataFrame, metric: str = "fwd.val_error", test_metric: str = "fwd.test_error") -> str:
    """Every table the runs in `df` have tags for, as Markdown."""
    runs = tagged(df)
    tables = sorted({t.split("/", 1)[0] for t in runs["tag"]})
    datasets = {t: sorted(set(runs[runs["tag"].str.startswith(t + "/")]["dataset"].dropna())) for t in tables}
    out = []
    for table in tables:
        if table in PAPER_TABLES:
            for ds in datasets[table] or ["trec6"]:
                out.append(paper_table(df[df["dataset"].isin([ds]) | df["dataset"].isna()], table, ds, metric,
                                       test_metric))
        elif table == "figure3":
            out.append(lowshot_table(df, test_metric))
    return "\n\n".join(out) + "\n"
