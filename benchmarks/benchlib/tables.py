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
    """Each e2e row; an LM command's beside the step bench of the same sizes and vocabulary (bench lm,
    size <size>@v<V>), so that any gap between step and run shows."""
    e2e = [r for r in rows if r["bench"] == "e2e"]
    if not e2e:
        return
    steps = {(r["size"], r["system"], r.get("precision")): r for r in rows if r["bench"] == "lm"}
    t = new_table("end to end, each run: ulmfit's commands vs fastai's Learner, same ids (medians over rounds)",
                  ["command", "size", "vocab", "system", "prec", "unit", "step (lm bench)", "run (logged)", "loop (wall)",
                   "loop/step", "loop s", "eval s", "process s", "peak RSS MB", "seen"])
    for r in e2e:
        st = steps.get((f"{r['size']}@v{r.get('vocab')}", r["system"], r.get("precision")), {})
        ok, lm = r.get("status") == "ok", r.get("unit") == "tokens/s"
        gap = r["throughput_loop"] / st["throughput"] if ok and lm and st.get("throughput") else None
        seen = f"{fmt(r.get('tokens_seen'))} tok" + (f", {fmt(r.get('docs_seen'))} docs" if r.get("docs_seen") else "")
        t.add_row(r.get("command", "pretrain"), r["size"], f"{r.get('vocab_preset') or ''} {fmt(r.get('vocab'))}",
                  r["system"], r.get("precision") or "-", r.get("unit", ""), fmt(st.get("throughput"), 0) if lm else "-",
                  fmt(r.get("throughput"), 1) if ok else f"[yellow]{str(r.get('status'))[:60]}[/]",
                  fmt(r.get("throughput_loop"), 1), fmt(gap, 2), fmt(r.get("loop_s")), fmt(r.get("eval_s")),
                  fmt(r.get("process_s")), fmt(r.get("process_peak_rss_mb"), 0), seen if ok else "-")
    console.print(t)


def cell(r: dict, k: str, nd: int = 1) -> str:
    """A figure of an ok row, else a word for why there is none (the other table says more)."""
    return fmt(r.get(k), nd) if r.get("status") == "ok" else f"[yellow]{str(r.get('status', '-')).split(':')[0]}[/]"


def print_e2e_pairs(console, rows: list[dict]) -> None:
    """One line per (command, size, vocabulary, precision): ulmfit beside fastai, and their ratios."""
    pairs = [r for r in rows if r["bench"] == "e2e" and r["system"] == "ulmfit"]
    if not pairs:
        return
    other = {(r.get("command"), r["size"], r.get("vocab_preset"), r.get("precision")): r
             for r in rows if r["bench"] == "e2e" and r["system"] == "fastai"}
    t = new_table("end to end: ulmfit / fastai per command (loop = units/s of the training or prediction loop; "
                  "process = the whole command's wall time)",
                  ["command", "size", "vocab", "prec", "unit", "loop ulmfit", "loop fastai", "u/f loop",
                   "process s ulmfit", "process s fastai", "u/f process s", "RSS MB ulmfit", "RSS MB fastai",
                   "u bf16/f fp32 loop"])
    for u in pairs:
        f = other.get((u.get("command"), u["size"], u.get("vocab_preset"), u.get("precision")), {})
        t.add_row(u.get("command", "pretrain"), u["size"], f"{u.get('vocab_preset') or ''} {fmt(u.get('vocab'))}",
                  u.get("precision") or "-", u.get("unit", ""), cell(u, "throughput_loop"), cell(f, "throughput_loop"),
                  ratio(u, "fastai", "ratio_loop", best=False), cell(u, "process_s"), cell(f, "process_s"),
                  ratio(u, "fastai", "process_ratio", best=False), cell(u, "process_peak_rss_mb", 0),
                  cell(f, "process_peak_rss_mb", 0), ratio(u, "fastai_fp32", "ratio_loop", best=False))
    console.print(t)
