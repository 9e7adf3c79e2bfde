"""Constants shared by the coordinator and every worker (stdlib only)."""
from __future__ import annotations

import csv
import gzip
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks" / "bench.py"
DEFAULT_FASTAI_PY = REPO / ".venv-fastai" / "bin" / "python"
DATA_ROOT = REPO.parent / "shared" / "data"
WIKI_VALID = DATA_ROOT / "wikitext2" / "wiki.valid.tokens"
PAD_ID = 1  # ulmfit and fastai both put xxpad at id 1
FIRST_WORD_ID = 9  # ids 0..8 are the special tokens
N_CLASSES = 2

# Dropouts of conf/model/awd_lstm.yaml (drop_mult 1.0), which are fastai's awd_lstm_lm_config's.
# fastai's models are built with them; ulmfit's come from its own config, which holds the same.
DROPS = dict(output_p=0.4, hidden_p=0.3, input_p=0.4, embed_p=0.05, weight_p=0.5)
# ulmfit's TrainConfig defaults (AdamW(0.7, 0.99), eps 1e-5, wd 0.01, AR 2, TAR 1), given to
# fastai's Adam so that both optimisers do the same arithmetic; the LR does not change the speed.
OPT = dict(lr=1e-3, beta1=0.7, beta2=0.99, eps=1e-5, weight_decay=0.01)
ALPHA, BETA = 2.0, 1.0
LM_CLIP, CLF_CLIP = 0.4, 25.0  # conf/pretrain.yaml's and conf/train_clf.yaml's train.clip

SIZES = {
    # name: model and batch sizes; clf_bs_cpu keeps a CPU run within minutes
    "tiny": dict(vocab=1000, emb=32, hidden=64, layers=3, bs=16, bptt=20, max_len=100,
                 clf_lens=[300], clf_bs_cpu=8, clf_bs_cuda=16),  # 300 > max_len: BPT3C's no_grad chunks run
    "small": dict(vocab=5000, emb=64, hidden=128, layers=3, bs=64, bptt=70, max_len=1400,
                  clf_lens=[200, 1000, 5000], clf_bs_cpu=16, clf_bs_cuda=64),
    "paper30k": dict(vocab=30000, emb=400, hidden=1152, layers=3, bs=64, bptt=70, max_len=1400,
                     clf_lens=[200, 1000, 5000], clf_lens_cpu=[200], clf_bs_cpu=4, clf_bs_cuda=64),
    "paper60k": dict(vocab=60000, emb=400, hidden=1152, layers=3, bs=64, bptt=70, max_len=1400,
                     clf_lens=[200, 1000, 5000], clf_lens_cpu=[200], clf_bs_cpu=4, clf_bs_cuda=64),
}


def n_params(model) -> int:
    """Parameters counted once (a tied decoder shares the embedding's)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())

# The end-to-end bench's commands, in the order each hands its run to the next.
E2E_COMMANDS = ("pretrain", "finetune-lm", "train-clf", "predict")
# e2e vocabularies: tokenizer.max_vocab (the cap of every command's word vocabulary) and the corpus
# `ulmfit pretrain` reads ({data_root} filled in). WikiText-2's valid+test copy has ~10.9k words seen
# twice, too few for 60k: that row pretrains on the 50,000 unlabelled IMDb reviews (~64k), a hold-out
# of 250 reviews (valid_frac 0.005) as its validation. finetune-lm reads IMDb train + unsup (~76k).
E2E_VOCABS = {
    "10k": dict(max_vocab=10000, corpus="WikiText-2", pretrain=("dataset=wikitext2",)),
    "60k": dict(max_vocab=60000, corpus="IMDb unsup", pretrain=(
        "dataset=csv", "dataset.train_file={data_root}/imdb/unsup.csv.gz", "dataset.label_col=null",
        "dataset.valid_frac=0.005")),
}
IMDB_TRAIN_DOCS = 25000  # rows of imdb/train.csv.gz: train-clf's valid_frac is a share of them


def imdb_texts(split: str, data_root: Path | str = DATA_ROOT) -> list[str]:
    """The reviews of DATA_ROOT/imdb/<split>.csv.gz, in file order."""
    csv.field_size_limit(sys.maxsize)
    with gzip.open(Path(data_root) / "imdb" / f"{split}.csv.gz", "rt", encoding="utf-8", newline="") as f:
        return [row["text"] for row in csv.DictReader(f)]
