"""The language-model commands of the end-to-end bench (benchlib/e2e.py): `ulmfit pretrain` and
`ulmfit finetune-lm`. For each: its command line, the ids it reads (made by the stage's own
functions, saved for fastai's worker) and the figures read back from its run dir."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from .common import E2E_VOCABS, SIZES
from .e2e import Setup, base_overrides

FT_VALID_FRAC = 0.01  # finetune-lm validates on 250 IMDb reviews, not the default 2,500 (minutes at paper size)


def lm_batching(size: str, steps: int, args) -> list[str]:
    """The bench's batch and N steps of one epoch."""
    s = SIZES[size]
    return [f"train.bs={s['bs']}", f"train.bptt={s['bptt']}", "train.epochs=1", f"train.max_steps_per_epoch={steps}",
            *(["train.variable_bptt=false"] if args.e2e_fixed_bptt else [])]


def pretrain_overrides(size: str, preset: str, args, steps: int) -> list[str]:
    """`ulmfit pretrain` overrides: the preset's corpus and vocabulary cap, the size's model."""
    v = E2E_VOCABS[preset]
    corpus = [o.format(data_root=args.data_root) for o in v["pretrain"]]
    return [*corpus, *base_overrides(size, args), f"tokenizer.max_vocab={v['max_vocab']}",
            *lm_batching(size, steps, args), *(["dataset.max_docs=20"] if args.quick else [])]


def finetune_overrides(size: str, preset: str, args, steps: int, pretrained: Path) -> list[str]:
    """`ulmfit finetune-lm` overrides: IMDb (train + unsup, the paper's target text) from `pretrained`."""
    return ["dataset=imdb", f"dataset.valid_frac={FT_VALID_FRAC}", f"pretrained={pretrained}",
            *base_overrides(size, args), f"tokenizer.max_vocab={E2E_VOCABS[preset]['max_vocab']}",
            *lm_batching(size, steps, args), *(["dataset.max_docs=40"] if args.quick else [])]


def save_ids(path: Path, docs: dict, **extra) -> dict:
    """Each split's documents as one int32 array of ids and one of lengths (+ `extra` arrays),
    for fastai's worker; -> the splits' token and document counts."""
    import numpy as np

    arrays, counts = {}, {}
    for split, split_docs in docs.items():
        arrays[f"{split}_ids"] = np.concatenate([np.asarray(d) for d in split_docs]).astype(np.int32)
        arrays[f"{split}_lens"] = np.array([len(d) for d in split_docs], dtype=np.int64)
        counts.update({f"{split}_tokens": len(arrays[f"{split}_ids"]), f"{split}_docs": len(split_docs)})
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays, **{k: np.asarray(v) for k, v in extra.items()})
    return counts


def run_tokens(cfg, train_docs, steps: int) -> tuple[int, int]:
    """(steps, tokens) of the run's first `steps` batches, capped at one epoch: its own LMStream
    (a pure function of seed and epoch) over its own ids, so variable BPTT is counted exactly."""
    from itertools import islice

    from ulmfit_cli.data.batching import LMStream

    t = cfg.train
    stream = LMStream(train_docs, t.bs, t.bptt, seed=cfg.seed, shuffle=True, variable=t.variable_bptt)
    steps = min(steps, len(stream))
    return steps, sum(b.x.numel() for b in islice(stream.epoch(0), steps))


def lm_setup(command: str, size: str, preset: str, args, overrides: list[str], docs: dict, itos: list[str],
             steps: int, cfg) -> Setup:
    """The Setup of an LM command over its own (non-empty) documents."""
    docs = {split: [d for d in split_docs if len(d)] for split, split_docs in docs.items()}
    path = Path(args.out) / f"e2e_ids_{command}_{size}_{preset}.npz"
    counts = save_ids(path, docs, **({"itos": itos} if command == "finetune-lm" else {}))
    steps, tokens = run_tokens(cfg, docs["train"], steps)
    prep = {"train_tokens": counts["train_tokens"], "valid_tokens": counts["valid_tokens"],
            "variable_bptt": bool(cfg.train.variable_bptt)}
    return Setup(command, size, preset, args, SIZES[size]["bs"], steps, path, [command, *overrides], read_lm,
                 vocab=len(itos), units=tokens, tokens=tokens, prep=prep)


def prepare_pretrain(size: str, preset: str, args, chain, prep: bool) -> Setup:
    """The pretrain stage's corpus, vocabulary and ids (its own numericalized_corpus)."""
    from ulmfit_cli.config import compose
    from ulmfit_cli.stages.pretrain import numericalized_corpus

    overrides = pretrain_overrides(size, preset, args, 1 if prep else args.e2e_steps)
    cfg = compose("pretrain", overrides)
    _, numer, train, valid = numericalized_corpus(cfg)
    return lm_setup("pretrain", size, preset, args, overrides, {"train": train, "valid": valid}, list(numer.itos),
                    1 if prep else args.e2e_steps, cfg)


def prepare_finetune(size: str, preset: str, args, chain, prep: bool) -> Setup:
    """finetune-lm's target text and vocabulary as its stage builds them from the pretrain run the
    chain hands on; fastai gets that run through `ulmfit export-fastai`."""
    from ulmfit_cli.config import compose
    from ulmfit_cli.data import load_dataset
    from ulmfit_cli.data.token_cache import encode
    from ulmfit_cli.stages.finetune_lm import target_vocabulary
    from ulmfit_cli.stages.sources import load_lm_checkpoint

    pretrained = chain.run_dir("pretrain")
    steps = 1 if prep else args.e2e_steps
    overrides = finetune_overrides(size, preset, args, steps, pretrained)
    cfg = compose("finetune_lm", overrides)
    data = load_dataset(cfg.dataset, cfg.data_root)
    texts = data.train_texts + data.lm_extra + (data.test_texts if cfg.dataset.use_test_for_lm else [])
    numer, train = target_vocabulary(cfg, texts, load_lm_checkpoint(pretrained, "fwd", "pretrained"), None)
    valid = encode(numer, data.valid_texts, None)
    st = lm_setup("finetune-lm", size, preset, args, overrides, {"train": train, "valid": valid}, list(numer.itos),
                  steps, cfg)
    if not prep and chain.fastai_py:
        st.fastai = {"export": str(chain.export("pretrain"))}
    return st


def run_vocab(run_dir: Path, summary: dict) -> int | None:
    """The run's vocabulary size: summary.json's (pretrain), else train.log's `vocab N` line."""
    if summary.get("vocab_size"):
        return summary["vocab_size"]
    log = (run_dir / "train.log").read_text() if (run_dir / "train.log").exists() else ""
    found = re.findall(r"vocab (\d+)", log)
    return int(found[-1]) if found else None


def read_lm(st: Setup, run_dir: Path) -> dict:
    """The figures the run itself wrote (metrics.csv's train and valid rows, summary.json),
    checked against the ids fastai is given."""
    with open(run_dir / "metrics.csv") as f:
        rows = {r["split"]: r for r in csv.DictReader(f)}
    train, valid = rows["train"], rows["valid"]
    summary = json.loads((run_dir / "summary.json").read_text())
    seen = (run_vocab(run_dir, summary), summary["results"]["fwd"]["train_tokens"], int(train["step"]))
    if seen != (st.vocab, st.prep["train_tokens"], st.steps):
        return {"status": f"error: the run's vocab, corpus tokens and steps {seen} differ from the bench's "
                          f"{(st.vocab, st.prep['train_tokens'], st.steps)}; see {run_dir}"}
    return {"status": "ok", "throughput": float(train["throughput"]), "loop_s": float(train["elapsed_s"]),
            "eval_s": float(valid["elapsed_s"]) - float(train["elapsed_s"]),
            "val_perplexity": float(valid["perplexity"]), "run_wall_s": summary["wall_time_s"],
            "units_seen": st.units, "tokens_seen": st.tokens, "steps_seen": seen[2]}
