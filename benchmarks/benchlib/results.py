"""Ratios between systems, the terminal tables and results.json / results.csv."""
from __future__ import annotations

import csv
import json
from pathlib import Path

CSV_COLS = ["bench", "command", "size", "vocab_preset", "doc_len", "system", "precision", "status", "throughput", "unit",
            "median_step_s", "steps", "throughput_best", "min_step_s", "throughput_loop", "units_seen", "tokens_seen",
            "docs_seen", "loop_s", "eval_s", "process_s", "process_peak_rss_mb", "peak_mem_mb", "mem_kind",
            "peak_rss_mb", "cuda_peak_mb", "ratio_vs_fastai", "ratio_vs_bare", "ratio_best_vs_fastai",
            "ratio_best_vs_bare", "ratio_loop_vs_fastai", "process_ratio_vs_fastai", "rss_ratio_vs_fastai",
            "mem_ratio_vs_fastai", "mem_ratio_vs_bare", "ratio_vs_fp32", "ratio_best_vs_fp32", "ratio_loop_vs_fp32",
            "ratio_vs_fastai_fp32", "ratio_best_vs_fastai_fp32", "ratio_loop_vs_fastai_fp32",
            "mem_ratio_vs_fastai_fp32", "process_ratio_vs_fastai_fp32", "bs", "vocab", "emb", "hidden", "layers",
            "bptt", "max_len", "phases", "rounds", "n_params", "optimizer", "torch", "fastai", "fit_s",
            "fit_tokens_per_s", "n_tokens", "run_dir", "command_line", "device", "device_name", "threads", "date",
            "host", "cpu_model", "git_commit"]

# (field, ratio name prefix): the median step, the fastest step, and (e2e) the loop's wall time
FIGURES = (("throughput", "ratio"), ("throughput_best", "ratio_best"), ("throughput_loop", "ratio_loop"))


def key(r: dict, system: str, precision: str | None) -> tuple:
    return (r["bench"], r.get("command"), r["size"], r.get("vocab_preset"), r.get("doc_len"), system, precision)


def set_ratios(r: dict, o: dict | None, name: str, memory: bool = True) -> None:
    if not (o and o.get("throughput")):
        return
    for field, prefix in FIGURES:
        if r.get(field) and o.get(field):
            r[f"{prefix}_vs_{name}"] = r[field] / o[field]
    if memory and r.get("peak_mem_mb") and o.get("peak_mem_mb"):
        r[f"mem_ratio_vs_{name}"] = r["peak_mem_mb"] / o["peak_mem_mb"]
    # e2e: the whole process's wall time (lower is faster) and peak RSS
    for field, prefix in (("process_s", "process_ratio"), ("process_peak_rss_mb", "rss_ratio")):
        if memory and r.get(field) and o.get(field):
            r[f"{prefix}_vs_{name}"] = r[field] / o[field]


def add_ratios(rows: list[dict]) -> None:
    """ulmfit / fastai and ulmfit / bare (same precision); bf16 / fp32 (same system); and ulmfit bf16 /
    fastai fp32: what a user gains by switching runner and turning on bf16 (fastai's default is fp32)."""
    by_key = {key(r, r["system"], r.get("precision")): r for r in rows}
    for r in rows:
        if not r.get("throughput"):
            continue
        if r.get("precision") == "bf16":
            set_ratios(r, by_key.get(key(r, r["system"], "fp32")), "fp32", memory=False)
        if r["system"] != "ulmfit":
            continue
        for other in ("fastai", "bare"):
            set_ratios(r, by_key.get(key(r, other, r.get("precision"))), other)
        if r.get("precision") == "bf16":
            set_ratios(r, by_key.get(key(r, "fastai", "fp32")), "fastai_fp32")


def fmt(x, nd=1):
    if x is None or x == "":
        return "-"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return str(x)


def ratio(r: dict, other: str, prefix: str = "ratio", best: bool = True) -> str:
    """'median-based (best-step-based)' ratio; the second resists load spikes from other processes."""
    if r.get(f"{prefix}_vs_{other}") is None:
        return "-"
    if not best or r.get(f"ratio_best_vs_{other}") is None:
        return f"{r[f'{prefix}_vs_{other}']:.2f}"
    return f"{r[f'{prefix}_vs_{other}']:.2f} ({r[f'ratio_best_vs_{other}']:.2f})"


def write_outputs(out: Path, meta: dict, rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2, default=str))
    common = {k: meta.get(k) for k in ("device", "device_name", "threads", "date", "host", "git_commit")}
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**common, **{k: v for k, v in r.items() if not isinstance(v, (dict, list))}})


def save_report(out: Path, stem: str, r: dict, markdown: str) -> None:
    """OUT/STEM.json (the figures) and OUT/STEM.md (the report), printed too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(r, indent=1))
    (out / f"{stem}.md").write_text(markdown)
    print(markdown)
