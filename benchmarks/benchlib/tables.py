"""The terminal tables (rich): the step benches, and the end-to-end runs beside the step figures."""
from __future__ import annotations

from .results import fmt, ratio

LEFT = ("bench", "size", "system", "unit", "prec")


def new_table(title: str, cols: list[str]):
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for c in cols:
        t.add_column(c, justify="left" if c in LEFT else "right", no_wrap=True,
                     max_width=22 if c == "throughput" else None)
    return t


def step_cells(r: dict, multi: bool) -> list[str]:
    ok = r.get("status") == "ok"
    cells = [r["bench"], str(r["size"]), fmt(r.get("doc_len")), fmt(r.get("bs")), r["system"]]
    cells += [r.get("precision") or "-"] if multi else []
    cells += [fmt(r.get("throughput")) if ok else f"[yellow]{r.get('status', '')[:60]}[/]",
              r.get("unit", ""), fmt(r.get("median_step_s"), 3), fmt(r.get("min_step_s"), 3), fmt(r.get("steps")),
              fmt(r.get("peak_mem_mb"), 0), ratio(r, "fastai"), ratio(r, "bare"),
              fmt(r.get("mem_ratio_vs_fastai"), 2), fmt(r.get("mem_ratio_vs_bare"), 2)]
    if multi:
        cells += [ratio(r, "fp32"), ratio(r, "fastai_fp32"), fmt(r.get("mem_ratio_vs_fastai_fp32"), 2)]
    return cells


def print_steps(console, rows: list[dict], meta: dict) -> None:
    rows = [r for r in rows if r["bench"] != "e2e"]
    if not rows:
        return
    multi = len({r.get("precision") for r in rows if r["bench"] != "tokenize"}) > 1
    cols = ["bench", "size", "doc len", "bs", "system"] + (["prec"] if multi else []) + [
        "throughput", "unit", "med step s", "min step s", "steps", "peak mem MB", "ulmfit/fastai", "ulmfit/bare",
        "mem u/f", "mem u/b"] + (["bf16/fp32", "u bf16/f fp32", "mem u bf16/f fp32"] if multi else [])
    t = new_table(f"ulmfit bench — {meta['device_name']} · torch {meta['torch']} · {meta['threads']} threads · "
                  f"{meta['precision']} · ratios: median (best step)", cols)
    for r in rows:
        t.add_row(*step_cells(r, multi))
    console.print(t)


def print_e2e(console, rows: list[dict]) -> None:
    """Each e2e row beside the step bench of the same sizes and vocabulary (bench lm, size <size>@v<V>)."""
    e2e = [r for r in rows if r["bench"] == "e2e"]
    if not e2e:
        return
    steps = {(r["size"], r["system"], r.get("precision")): r for r in rows if r["bench"] == "lm"}
    t = new_table("end to end: `ulmfit pretrain` vs fastai's Learner.fit, same ids (tokens/s; ratios ulmfit/fastai)",
                  ["size", "system", "prec", "vocab", "step (lm bench)", "run (logged)", "loop (wall)",
                   "loop/step", "eval s", "process s", "u/f step", "u/f run", "u/f loop", "u bf16/f fp32 loop"])
    for r in e2e:
        st = steps.get((f"{r['size']}@v{r.get('vocab')}", r["system"], r.get("precision")), {})
        ok = r.get("status") == "ok"
        gap = r["throughput_loop"] / st["throughput"] if ok and st.get("throughput") else None
        t.add_row(r["size"], r["system"], r.get("precision") or "-", fmt(r.get("vocab")), fmt(st.get("throughput"), 0),
                  fmt(r.get("throughput"), 0) if ok else f"[yellow]{str(r.get('status'))[:50]}[/]",
                  fmt(r.get("throughput_loop"), 0), fmt(gap, 2), fmt(r.get("eval_s")), fmt(r.get("process_s")),
                  ratio(st, "fastai", best=False), ratio(r, "fastai", best=False),
                  ratio(r, "fastai", "ratio_loop", best=False), ratio(r, "fastai_fp32", "ratio_loop", best=False))
    console.print(t)
