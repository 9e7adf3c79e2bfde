#!/usr/bin/env python
"""TREC-6 transfer check on real data, sized for a 2-core CPU.

WikiText-2 (valid+test, ~430k tokens; its train split is not in ../shared/data) pretraining ->
TREC-6 LM fine-tuning -> TREC-6 classifier, forward and backward, compared with
(a) LM fine-tuning from a random LM (no pretraining, Table 4) and (b) a classifier from scratch.
Each step is an ordinary `ulmfit` run in OUT/<step>; finished steps are skipped on re-run.

    python studies/realdata_trec6.py [--shared ../shared/data] [--out runs/realdata_trec6] [-- extra overrides]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(stage: str, out: Path, name: str, *overrides: str) -> dict:
    run_dir = out / name
    if not (run_dir / "summary.json").exists():
        if (run_dir / ".hydra" / "overrides.yaml").exists():  # interrupted: continue it
            overrides = (*overrides, f"resume={run_dir}")
        cmd = [sys.executable, "-m", "ulmfit_cli", stage, *overrides, f"hydra.run.dir={run_dir}", "progress=none"]
        print("$ ulmfit", " ".join(cmd[3:]), flush=True)
        code = subprocess.run(cmd).returncode
        if code:  # its own error or "stopped" message is above; no traceback of this script
            sys.exit(f"`ulmfit {stage}` for {run_dir} ended with exit code {code}. "
                     "If it names an error, fix that; then run the same command again: finished steps are "
                     "skipped and this one continues.")
    return json.loads((run_dir / "summary.json").read_text())


def write_results(out: Path, results: dict) -> int:
    """OUT/results.json (stamped with the date) and the same JSON on stdout."""
    results = {**results, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(REPO / "outputs" / "realdata_trec6"))
    ap.add_argument("extra", nargs="*", help="overrides for every stage (e.g. model=tiny train.max_steps_per_epoch=5)")
    a = ap.parse_args()
    out = Path(a.out).resolve()
    common = ["experiment=trec6_cpu", f"data_root={a.shared}", *a.extra]

    pre = run("pretrain", out, "pretrain", *common, "dataset=wikitext2")
    ft = run("finetune-lm", out, "finetune", *common, f"pretrained={out / 'pretrain'}")
    clf = run("train-clf", out, "clf", *common, f"lm={out / 'finetune'}")
    ft0 = run("finetune-lm", out, "finetune_nopretrain", *common, "pretrained=null")
    clf0 = run("train-clf", out, "clf_nopretrain", *common, f"lm={out / 'finetune_nopretrain'}")
    scratch = run("train-clf", out, "clf_scratch", *common, "lm=null")

    results = {
        "wikitext2_val_perplexity": {d: r["val_perplexity"] for d, r in pre["results"].items()},
        "trec6_lm_val_perplexity": {"pretrained": {d: r["val_perplexity"] for d, r in ft["results"].items()},
                                    "no_pretraining": {d: r["val_perplexity"] for d, r in ft0["results"].items()}},
        "trec6_test_error": {name: {d: round(r["test_error"], 2) for d, r in s["results"].items()}
                             for name, s in (("ulmfit", clf), ("no_pretraining", clf0), ("from_scratch", scratch))},
        "majority_test_error": round(100 * (1 - clf["majority_test_accuracy"]), 2),
        "wall_time_s": sum(s["wall_time_s"] for s in (pre, ft, clf, ft0, clf0, scratch)),
        "device": clf["device"], "torch": clf["torch"],
    }
    return write_results(out, results)


if __name__ == "__main__":
    sys.exit(main())
