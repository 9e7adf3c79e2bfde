#!/usr/bin/env python
"""Throughput and peak-memory benchmark: ulmfit vs fastai vs a bare nn.LSTM stack.

One command, one machine, identical model configurations:

  lm        LM training tokens/s: ulmfit's Trainer.train_step (the stage's own config, build_lm,
            make_optimizer, lm_step, HiddenCarry: forward, AR/TAR, backward, clip, AdamW step,
            every AWD-LSTM dropout) vs fastai (AWD_LSTM + get_language_model + its Adam,
            RNNRegularizer's AR/TAR) vs bare (nn.Embedding + nn.LSTM x n_layers + tied decoder,
            no dropouts, no AR/TAR: the ceiling)
  clf       classifier training docs/s for documents of 200 / 1,000 / 5,000 tokens (BPT3C,
            max_len 1400): ulmfit's Trainer.train_step with build_classifier + clf_step vs
            fastai's get_text_classifier (SentenceEncoder + PoolingLinearClassifier)
  predict   inference docs/s through ulmfit's predict_proba (what `ulmfit predict` calls), and
            fastai's classifier forward under no_grad for comparison
  tokenize  tokens/s of fit_numericalizer and encode_many (word and spm) on WikiText-2 valid
  e2e       ulmfit's four commands as users run them (the console script: pretrain, finetune-lm,
            train-clf with gradual unfreezing, predict) each beside fastai doing the same job in
            its own Learner on the same token ids and documents: throughput as each run logs it,
            by the wall clock of its training (or prediction) loop, the whole process's wall time
            and peak RSS, at 10k and/or 60k vocabularies (--e2e-vocabs), runs alternating by
            rounds (benchlib/e2e.py says how each figure is timed)

The step benches run every measured configuration in its own child process (so peak memory is
that configuration's alone: CPU = the child's peak RSS from a baseline taken before the model
was built; CUDA = torch.cuda.max_memory_allocated). The systems compared are stepped in
lock-step, one step each in turn (order alternating every round), so load from other processes
hits them alike and the ratios stay fair even when absolute numbers are noisy.

fastai runs in its own interpreter (default .venv-fastai/bin/python): when that is missing the bench
creates it first with `bash scripts/fastai_env.sh` (fastai 2.8.12 beside the same torch); with
--no-fastai, or if that fails, fastai's rows say why they were skipped.

    python benchmarks/bench.py --quick                      # smoke test, < 1 minute
    python benchmarks/bench.py --quick --benches e2e        # the four commands at the tiny size, a few minutes
    python benchmarks/bench.py --sizes small,paper30k --steps 10 --warmup 3
    python benchmarks/bench.py --device cuda --precision bf16 --profile
    python benchmarks/bench.py --sizes paper30k --benches lm --precision fp32,bf16   # bf16 lever, interleaved
    python benchmarks/bench.py --sizes paper30k --benches e2e --precision fp32,bf16  # real runs
    python benchmarks/bench.py --sizes paper60k --benches e2e --e2e-vocabs 10k,60k --e2e-commands train-clf,predict

Writes <out>/results.json and <out>/results.csv (default outputs/bench/).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchlib, also for the fastai interpreter

from benchlib.common import DATA_ROOT, DEFAULT_FASTAI_PY, E2E_COMMANDS, E2E_VOCABS, REPO, SIZES  # noqa: E402


def size_help() -> str:
    return "Sizes: " + "; ".join(f"{k}: vocab {v['vocab']}, emb {v['emb']}, hidden {v['hidden']}, {v['layers']} "
                                 f"layers, bs {v['bs']}, bptt {v['bptt']}" for k, v in SIZES.items())


def add_step_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=20, help="timed steps per configuration (upper bound)")
    p.add_argument("--warmup", type=int, default=3, help="untimed LM steps first")
    p.add_argument("--clf-warmup", type=int, default=1, help="untimed classifier/predict steps first")
    p.add_argument("--min-steps", type=int, default=3, help="timed steps always done, whatever --max-seconds")
    p.add_argument("--max-seconds", type=float, default=40.0,
                   help="stop timing a configuration once its slowest system spent this long in timed steps "
                        "(after --min-steps); keeps paper sizes on CPU to minutes")
    p.add_argument("--clf-bs", type=int, default=None, help="classifier/predict batch size (default: per size, "
                   "64 on cuda, 16 (small) / 4 (paper) on cpu)")
    p.add_argument("--clf-lens", default=None,
                   help="document lengths, default 200,1000,5000 (on cpu, paper sizes default to 200 only: the "
                        "3-layer paper LSTM steps through a document one token at a time, tens of ms per token "
                        "on 2 shared cores, so one 1,000-token batch is ~1 min per system)")
    p.add_argument("--profile", action="store_true",
                   help="after timing, profile one LM step of every system (torch.profiler; top ops into the "
                        "JSON, full tables into <out>/profile_*.txt)")


def add_e2e_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--e2e-commands", default=",".join(E2E_COMMANDS),
                   help="e2e: comma list of " + ",".join(E2E_COMMANDS) + " (each starts from the run of the one "
                        "before it; one not benched is made by a short untimed run)")
    p.add_argument("--e2e-vocabs", default="10k",
                   help="e2e: comma list of " + "; ".join(f"{k} (tokenizer.max_vocab {v['max_vocab']}, pretrain on "
                                                           f"{v['corpus']}; finetune-lm on IMDb train + unsup)"
                                                           for k, v in E2E_VOCABS.items()))
    p.add_argument("--e2e-steps", type=int, default=30,
                   help="e2e: batches pretrain and finetune-lm train (train.max_steps_per_epoch; capped at one epoch)")
    p.add_argument("--e2e-clf-steps", type=int, default=3,
                   help="e2e: train-clf batches per unfreezing phase (over exactly that many batches of reviews)")
    p.add_argument("--e2e-clf-bs", type=int, default=None,
                   help="e2e: train-clf and predict batch size (default: the size's bs, 64 at paper sizes)")
    p.add_argument("--e2e-unfreeze", default="1,2,3,4",
                   help="e2e: train-clf's unfreeze.steps (ulmfit's default; 1,2,3 is fastai's reference script); "
                        "fastai runs freeze_to(-k) for each, then unfreeze()")
    p.add_argument("--e2e-predict-docs", type=int, default=10000, help="e2e: IMDb test reviews predict labels")
    p.add_argument("--e2e-rounds", type=int, default=1,
                   help="e2e: runs of every (system, precision), alternating; the median is reported")
    p.add_argument("--e2e-fixed-bptt", action="store_true",
                   help="e2e: ulmfit with train.variable_bptt=false (fastai's LMDataLoader is always fixed)")
    p.add_argument("--no-e2e-step", action="store_true",
                   help="e2e: skip the lm step bench at the e2e sizes and vocabulary (the 'step' column)")
    p.add_argument("--data-root", default=str(DATA_ROOT),
                   help="e2e: data root holding wikitext2/ (wiki.train.tokens, or valid+test, which the "
                        "reader then uses as the corpus) and imdb/ (train, test, unsup .csv.gz)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=size_help(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads in every worker (default 2; 1 with --quick, which is far less "
                        "sensitive to other processes on a shared machine)")
    p.add_argument("--sizes", default=None,
                   help="comma list of " + ",".join(SIZES) + " (default: small,paper30k on cpu; "
                        "small,paper30k,paper60k on cuda)")
    p.add_argument("--benches", default="lm,clf,predict,tokenize", help="comma list of lm,clf,predict,tokenize,e2e")
    p.add_argument("--precision", default="fp32",
                   help="fp32, bf16 (autocast), or fp32,bf16: both, stepped in lock-step in the same groups")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes and few steps: a smoke test (< 1 minute; e2e: 3 LM steps, 1 step per unfreezing "
                        "phase, 200 reviews to predict, a few corpus documents: a few minutes)")
    p.add_argument("--no-fastai", action="store_true", help="skip fastai (and do not create its venv)")
    p.add_argument("--fastai-python", default=str(DEFAULT_FASTAI_PY), help="interpreter of the fastai venv")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(REPO / "outputs" / "bench"))
    add_step_args(p)
    add_e2e_args(p)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--e2e-fastai", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        from benchlib.worker import worker_main

        return worker_main(args.worker)
    if args.e2e_fastai:
        from benchlib.e2e_fastai import main as e2e_fastai

        return e2e_fastai(args.e2e_fastai)
    from benchlib.coordinator import coordinate

    return coordinate(args)


if __name__ == "__main__":
    sys.exit(main())
