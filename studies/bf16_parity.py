#!/usr/bin/env python
"""Does bf16 autocast train as well as fp32? (a speed lever counts only with accuracy parity.)

Pretrains the same AWD-LSTM on WikiText-2 (valid+test, the part in ../shared/data) in fp32 and in
bf16, for several seeds, with the paper's regularisation on, and compares validation perplexity
(each run evaluated in its own precision, as a user would see it) and tokens/s. Parity means the
bf16 mean lies within the fp32 seed-to-seed spread (or 3%, whichever is larger).

    python studies/bf16_parity.py [--out outputs/bf16_parity] [--seeds 0,1] [--epochs 2] [-- overrides]

Each run is an ordinary `ulmfit pretrain` in OUT/<precision>_s<seed>; finished runs are skipped.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realdata_trec6 import run, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def train_throughput(run_dir: Path) -> float:
    rows = [r for r in csv.DictReader(open(run_dir / "metrics.csv")) if r["split"] == "train" and r["throughput"]]
    return statistics.median(float(r["throughput"]) for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(REPO / "outputs" / "bf16_parity"))
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("extra", nargs="*", help="overrides for every run (default model: small, 200/576/3)")
    a = ap.parse_args()
    out = Path(a.out).resolve()
    seeds = [int(s) for s in a.seeds.split(",")]
    common = ["experiment=trec6_cpu", "dataset=wikitext2", "bidirectional=fwd", f"data_root={a.shared}",
              f"train.epochs={a.epochs}", *a.extra]
    ppl: dict[str, list[float]] = {"fp32": [], "bf16": []}
    tps: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for seed in seeds:  # interleaved, so machine load drifts hit both precisions alike
        for precision in ("fp32", "bf16"):
            name = f"{precision}_s{seed}"
            s = run("pretrain", out, name, *common, f"precision={precision}", f"seed={seed}")
            ppl[precision].append(s["results"]["fwd"]["val_perplexity"])
            tps[precision].append(train_throughput(out / name))
    mean = {p: statistics.mean(v) for p, v in ppl.items()}
    spread = max(ppl["fp32"]) - min(ppl["fp32"])
    tolerance = max(spread, 0.03 * mean["fp32"])
    result = {
        "val_perplexity": ppl, "mean_val_perplexity": mean,
        "fp32_seed_spread": spread, "tolerance": tolerance,
        "bf16_minus_fp32": mean["bf16"] - mean["fp32"],
        "parity": abs(mean["bf16"] - mean["fp32"]) <= tolerance,
        "train_tokens_per_s": tps,
        "speedup_bf16_over_fp32": statistics.mean(tps["bf16"]) / statistics.mean(tps["fp32"]),
        "seeds": seeds, "epochs": a.epochs, "overrides": common,
        "device": s["device"], "torch": s["torch"],
    }
    return write_results(out, result)


if __name__ == "__main__":
    sys.exit(main())
