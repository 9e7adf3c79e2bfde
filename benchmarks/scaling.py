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
import threading
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


def rss_mb(pid: int) -> tuple[float, float] | None:
    """(resident, of it private: not pages of mapped files) MB of a process and its children (the
    tokenizer's workers). Pages of the memory-mapped token cache count as resident once read, and
    the kernel reads ahead; they are page cache it can drop, so the private part is the bound."""
    try:
        out = subprocess.run(["ps", "--no-headers", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                             text=True).stdout
        total = anon = 0.0
        for p in [pid, *(int(v) for v in out.split())]:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
            anon += int(re.search(r"RssAnon:\s+(\d+)", status).group(1)) / 1024
        return total, anon
    except (OSError, ValueError, AttributeError):
        return None


def timed_run(cmd: list[str]) -> tuple[subprocess.CompletedProcess, float, list[tuple[datetime, tuple]]]:
    """Run `cmd` under /usr/bin/time -v, sampling its memory twice a second: (result, wall s, samples)."""
    t0 = datetime.now()
    proc = subprocess.Popen(["/usr/bin/time", "-v", *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[datetime, tuple]] = []
    out: dict = {}
    reader = threading.Thread(target=lambda: out.update(zip(("stdout", "stderr"), proc.communicate())))
    reader.start()
    while reader.is_alive():
        children = subprocess.run(["ps", "--no-headers", "-o", "pid=", "--ppid", str(proc.pid)],
                                  capture_output=True, text=True).stdout.split()
        got = rss_mb(int(children[0])) if children else None
        if got:
            samples.append((datetime.now(), got))
        reader.join(0.5)
    done = subprocess.CompletedProcess(cmd, proc.returncode, out.get("stdout", ""), out.get("stderr", ""))
    return done, (datetime.now() - t0).total_seconds(), samples


def peak_rss_kb(stderr: str) -> int:
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr).group(1))


def run_once(corpus: Path, run_dir: Path, cache: Path, steps: int, model: str, max_vocab: int) -> dict:
    cmd = [str(Path(sys.executable).with_name("ulmfit")), "pretrain",
           "dataset=wikitext103", f"dataset.data_dir={corpus}", f"model={model}",
           f"tokenizer.max_vocab={max_vocab}", "train.epochs=1", f"train.max_steps_per_epoch={steps}",
           f"token_cache={cache}", "progress=none", f"hydra.run.dir={run_dir}"]
    proc, wall, samples = timed_run(cmd)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    log = (run_dir / "train.log").read_text().splitlines()
    start = stamp(log[0])
    lm_line = next(ln for ln in log if " LM: " in ln and "train tokens" in ln)
    rows = list(csv.DictReader(open(run_dir / "metrics.csv", newline="")))
    train = next(r for r in rows if r["split"] == "train")
    training = [mb for when, mb in samples if when > stamp(lm_line)]
    private = [a for _, a in training]
    return {"data_s": round((stamp(lm_line) - start).total_seconds(), 2), "process_s": round(wall, 1),
            "train_tokens": int(re.search(r"(\d+) train tokens", lm_line).group(1)),
            "tokens_per_s": round(float(train["throughput"])), "peak_rss_mb": round(peak_rss_kb(proc.stderr) / 1024),
            "training_rss_mb": round(max(t for t, _ in training)) if training else None,
            "training_private_mb": round(max(private)) if private else None}


def clf_corpus(path: Path, length: int, n_docs: int, docs: list[str]) -> None:
    """A CSV of `n_docs` documents of about `length` whitespace tokens each (reviews joined end to
    end), labels alternating."""
    words = " ".join(docs[:20000]).split()
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n_docs):
            start = (i * length) % max(1, len(words) - length)
            w.writerow([" ".join(words[start:start + length]), i % 2])


def clf_once(data: Path, run_dir: Path, model: str, max_len: int) -> dict:
    """A real `ulmfit train-clf` (from scratch, no unfreezing: the memory of the BPT3C classifier
    itself) on the documents in `data`: docs/s and peak RSS."""
    cmd = [str(Path(sys.executable).with_name("ulmfit")), "train-clf", "dataset=csv", f"dataset.train_file={data}",
           "dataset.text_cols=[text]", "dataset.label_col=label", f"model={model}", "lm=null", "unfreeze=none",
           "train.epochs=1", "train.bs=8", f"train.max_len={max_len}", "token_cache=off", "progress=none",
           f"hydra.run.dir={run_dir}"]
    proc, wall, _ = timed_run(cmd)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    rows = list(csv.DictReader(open(run_dir / "metrics.csv", newline="")))
    train = next(r for r in rows if r["split"] == "train")
    return {"docs_per_s": round(float(train["throughput"]), 2), "peak_rss_mb": round(peak_rss_kb(proc.stderr) / 1024),
            "process_s": round(wall, 1)}


def table(results: list[dict], clf: list[dict], host: str) -> str:
    out = [f"{host}", "", "| corpus (whitespace tokens) | LM train tokens | data: read + tokenize + numericalize, s "
           "(cold / cache hit) | tokens/s (cold / hit) | peak RSS, MB (cold / hit) | RSS while training, MB "
           "(cold / hit) | of it private, MB (cold / hit) |", "|---|---|---|---|---|---|---|"]
    for r in results:
        c, w = r["cold"], r["warm"]
        out.append(f"| {r['words']:,} | {c['train_tokens']:,} | {c['data_s']} / {w['data_s']} | "
                   f"{c['tokens_per_s']:,} / {w['tokens_per_s']:,} | {c['peak_rss_mb']:,} / {w['peak_rss_mb']:,} | "
                   f"{c['training_rss_mb']} / {w['training_rss_mb']} | "
                   f"{c['training_private_mb']} / {w['training_private_mb']} |")
    if clf:
        out += ["", "| classifier document length (tokens; max_len " + str(clf[0]["max_len"]) + ") | docs/s | "
                "tokens/s | peak RSS, MB |", "|---|---|---|---|"]
        out += [f"| {r['length']:,} | {r['docs_per_s']} | {round(r['docs_per_s'] * r['length']):,} | "
                f"{r['peak_rss_mb']:,} |" for r in clf]
    return "\n".join(out) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sizes", default="1e6,1e7,1e8", help="corpus sizes in whitespace tokens")
    p.add_argument("--steps", type=int, default=60, help="training steps measured per run")
    p.add_argument("--model", default="tiny")
    p.add_argument("--max-vocab", type=int, default=10000)
    p.add_argument("--clf-lens", default="1400,5600,22400",
                   help="classifier document lengths in tokens ('' for none): 32 documents each, max_len 1400")
    args = p.parse_args()
    docs = source_documents()
    results, clf = [], []
    for size in (int(float(s)) for s in args.sizes.split(",") if s):
        corpus = args.out / f"corpus_{size}"
        words = write_corpus(corpus, size, docs)
        cache = args.out / f"cache_{size}"
        runs = {k: run_once(corpus, args.out / f"run_{size}_{k}", cache, args.steps, args.model, args.max_vocab)
                for k in ("cold", "warm")}
        results.append({"size": size, "words": words, **runs})
        print(json.dumps(results[-1]), flush=True)
    for length in (int(v) for v in args.clf_lens.split(",") if v):
        data = args.out / f"clf_{length}.csv"
        clf_corpus(data, length, 32, docs)
        clf.append({"length": length, "max_len": 1400,
                    **clf_once(data, args.out / f"clf_run_{length}", args.model, 1400)})
        print(json.dumps(clf[-1]), flush=True)
    import torch

    host = (f"{platform.node()}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
            f"model={args.model}, max_vocab {args.max_vocab}, {args.steps} steps, {datetime.now():%Y-%m-%d}")
    (args.out / "results.json").write_text(json.dumps({"host": host, "results": results, "clf": clf}, indent=1))
    (args.out / "results.md").write_text(table(results, clf, host))
    print(table(results, clf, host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
