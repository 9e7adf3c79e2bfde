#!/usr/bin/env python
"""How pretraining's cost grows with the corpus: data time, cache load time, tokens/s, peak RSS.

    python benchmarks/scaling.py --out outputs/bench/scaling [--sizes 1e6,1e7,1e8] [--steps 60]

For each size it writes a WikiText-style corpus folder (wiki.train.tokens: IMDb reviews from
../shared/data/imdb (train, test and unsup) and WikiText-2's valid and test articles, repeated in
that order until the corpus holds SIZE whitespace tokens, a heading every 100 documents;
wiki.valid.tokens / wiki.test.tokens: WikiText-2's, the same for every size), then runs the real
`ulmfit pretrain dataset=wikitext103 dataset.data_dir=<folder>` twice under /usr/bin/time -v:
once with an empty token cache (read + tokenize + numericalize + cache write) and once with it
full (cache load). Training is capped at --steps steps of one epoch, so tokens/s is measured on
the same number of batches for every size. Data time is the time between the run's first log line
and the line that reports the LM's token counts (train.log timestamps). Writes OUT/results.json
and OUT/results.md.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import json
import platform
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def source_documents() -> list[str]:
    """IMDb reviews (train, test, unsup) then WikiText-2's valid and test lines, one document each."""
    docs = []
    for name in ("train", "test", "unsup"):
        with gzip.open(SHARED / "imdb" / f"{name}.csv.gz", "rt", encoding="utf-8", newline="") as f:
            docs += [row["text"].replace("\n", " ") for row in csv.DictReader(f)]
    for name in ("valid", "test"):
        lines = (SHARED / "wikitext2" / f"wiki.{name}.tokens").read_text(encoding="utf-8").splitlines()
        docs += [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("=")]
    return docs


def write_corpus(folder: Path, size: int, docs: list[str]) -> int:
    """wiki.{train,valid,test}.tokens in `folder`; returns the train file's whitespace tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    n, i = 0, 0
    with open(folder / "wiki.train.tokens", "w", encoding="utf-8") as f:
        while n < size:
            if i % 100 == 0:
                f.write(f" = Part {i // 100} = \n")
            doc = docs[i % len(docs)]
            f.write(f" {doc} \n")
            n += len(doc.split())
            i += 1
    for name in ("valid", "test"):
        (folder / f"wiki.{name}.tokens").write_bytes((SHARED / "wikitext2" / f"wiki.{name}.tokens").read_bytes())
    return n


def stamp(line: str) -> datetime | None:
    m = STAMP.match(line)
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f") if m else None


def run_once(corpus: Path, run_dir: Path, cache: Path, steps: int, model: str, max_vocab: int) -> dict:
    cmd = ["/usr/bin/time", "-v", str(Path(sys.executable).with_name("ulmfit")), "pretrain",
           "dataset=wikitext103", f"dataset.data_dir={corpus}", f"model={model}",
           f"tokenizer.max_vocab={max_vocab}", "train.epochs=1", f"train.max_steps_per_epoch={steps}",
           f"token_cache={cache}", "progress=none", f"hydra.run.dir={run_dir}"]
    t0 = datetime.now()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = (datetime.now() - t0).total_seconds()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    log = (run_dir / "train.log").read_text().splitlines()
    start = stamp(log[0])
    lm_line = next(ln for ln in log if " LM: " in ln and "train tokens" in ln)
    rows = list(csv.DictReader(open(run_dir / "metrics.csv", newline="")))
    train = next(r for r in rows if r["split"] == "train")
    return {"data_s": round((stamp(lm_line) - start).total_seconds(), 2), "process_s": round(wall, 1),
            "train_tokens": int(re.search(r"(\d+) train tokens", lm_line).group(1)),
            "tokens_per_s": round(float(train["throughput"])), "peak_rss_mb": round(rss_kb / 1024)}


def table(results: list[dict], host: str) -> str:
    out = [f"{host}", "", "| corpus (whitespace tokens) | LM train tokens | tokenize + numericalize, s | "
           "cache load, s | tokens/s (cold / warm) | peak RSS, MB (cold / warm) |", "|---|---|---|---|---|---|"]
    for r in results:
        c, w = r["cold"], r["warm"]
        out.append(f"| {r['words']:,} | {c['train_tokens']:,} | {c['data_s']} | {w['data_s']} | "
                   f"{c['tokens_per_s']:,} / {w['tokens_per_s']:,} | {c['peak_rss_mb']:,} / {w['peak_rss_mb']:,} |")
    return "\n".join(out) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sizes", default="1e6,1e7,1e8", help="corpus sizes in whitespace tokens")
    p.add_argument("--steps", type=int, default=60, help="training steps measured per run")
    p.add_argument("--model", default="tiny")
    p.add_argument("--max-vocab", type=int, default=10000)
    args = p.parse_args()
    docs = source_documents()
    results = []
    for size in (int(float(s)) for s in args.sizes.split(",")):
        corpus = args.out / f"corpus_{size}"
        words = write_corpus(corpus, size, docs)
        cache = args.out / f"cache_{size}"
        runs = {k: run_once(corpus, args.out / f"run_{size}_{k}", cache, args.steps, args.model, args.max_vocab)
                for k in ("cold", "warm")}
        results.append({"size": size, "words": words, **runs})
        print(json.dumps(results[-1]), flush=True)
    import torch

    host = (f"{platform.node()}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
            f"model={args.model}, max_vocab {args.max_vocab}, {args.steps} steps, {datetime.now():%Y-%m-%d}")
    (args.out / "results.json").write_text(json.dumps({"host": host, "results": results}, indent=1))
    (args.out / "results.md").write_text(table(results, host))
    print(table(results, host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
