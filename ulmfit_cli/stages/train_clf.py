"""Stage 3 (paper §3.3): target-task classifier fine-tuning.

Put two linear blocks with concat pooling on the fine-tuned encoder, then train with gradual
unfreezing, discriminative LRs, STLR and BPT3C; one classifier per direction, and for
`bidirectional=both` average their probabilities.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from ..data import load_dataset
from ..data.batching import ClassifierBatches
from ..data.tokenizers import fit_numericalizer, numericalizer_from_state
from ..data.token_cache import token_cache_dir
from ..errors import UserError
from ..training.loop import Trainer
from ..training.param_groups import unfreeze_plan
from ..training.schedules import make_schedule
from .clf import build_classifier_for, clf_step, load_encoder_from_lm, predict_proba, scores
from .common import Run, find_source_run, load_lm_checkpoint
from .lm import encode, make_optimizer, stop_on_signal

log = logging.getLogger("ulmfit")


def label_ids(labels, classes: list[str], multi_label: bool) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    if multi_label:
        y = np.zeros((len(labels), len(classes)), dtype=np.float32)
        for r, labs in enumerate(labels):
            for lab in labs:
                if lab in index:
                    y[r, index[lab]] = 1.0
        return y
    return np.array([index.get(str(lab), -1) for lab in labels], dtype=np.int64)


def run(cfg) -> dict:
    directions = list(cfg.bidirectional.directions)
    source_dir = find_source_run(cfg.lm, cfg.stage, cfg.outputs_root, directions, "lm")
    sources = {d: load_lm_checkpoint(source_dir, d, "lm") if source_dir else None for d in directions}
    run = Run(cfg)
    data = load_dataset(cfg.dataset, cfg.data_root)
    if not data.labelled:
        raise UserError(f"dataset={data.name} has no labels, so no classifier can be trained on it.",
                        "Pick a labelled dataset (e.g. dataset=trec6) or set dataset.label_col=<column>.")
    multi = bool(cfg.dataset.multi_label)
    classes = list(data.classes)
    src = sources[directions[0]]
    numericalizer = (numericalizer_from_state(src["numericalizer"]) if src
                     else fit_numericalizer(data.train_texts, cfg.tokenizer))
    cache = token_cache_dir(cfg)
    docs = {s: encode(numericalizer, getattr(data, f"{s}_texts"), cache) for s in ("train", "valid", "test")}
    ys = {s: label_ids(getattr(data, f"{s}_labels"), classes, multi) for s in ("train", "valid", "test")}
    for w in data.warnings:
        log.warning(w)

    t = cfg.train
    eval_bs = t.eval_bs or t.bs
    results, probs = {}, {"valid": [], "test": []}
    for direction in directions:
        reverse = direction == "bwd"
        source = sources[direction]
        model = build_classifier_for(cfg, len(classes), len(numericalizer.itos), numericalizer.pad_id,
                                     source["model_config"] if source else None)
        if source:
            load_encoder_from_lm(model, source)
        model.to(run.device)
        groups = model.layer_groups()
        opt, lrs = make_optimizer(cfg, groups)
        train = ClassifierBatches(docs["train"], ys["train"], t.bs, numericalizer.pad_id, t.bptt, seed=cfg.seed,
                                  reverse=reverse)

        def evaluate(m, split="valid"):
            p = predict_proba(m, docs[split], bs=eval_bs, pad_id=numericalizer.pad_id, reverse=reverse,
                              device=run.device, precision=run.precision, multi_label=multi)
            return scores(p, ys[split], multi)

        trainer = Trainer(model, opt, lrs, make_schedule(cfg.schedule), clf_step(run.device, multi), evaluate,
                          device=run.device, precision=run.precision, clip=t.clip, on_nan=t.on_nan,
                          log_row=run.log_row(direction), progress=run.progress,
                          max_steps_per_epoch=t.max_steps_per_epoch)
        with stop_on_signal(trainer):
            trainer.fit(train, unfreeze_plan(cfg.unfreeze, len(groups), t.epochs))
        res = {}
        for split in ("valid", "test"):
            p = predict_proba(model, docs[split], bs=eval_bs, pad_id=numericalizer.pad_id, reverse=reverse,
                              device=run.device, precision=run.precision, multi_label=multi)
            probs[split].append(p)
            res.update({f"{'val' if split == 'valid' else 'test'}_{k}": v for k, v in scores(p, ys[split], multi).items()})
        run.metrics({"direction": direction, "epoch": trainer.state.epoch, "step": trainer.state.global_step,
                     "split": "test", "loss": res["test_loss"], "accuracy": res["test_accuracy"],
                     "elapsed_s": round(trainer.elapsed(), 3)})
        results[direction] = res
        run.save(direction, {"kind": "clf", "direction": direction, "classes": classes, "multi_label": multi,
                             "pad_id": numericalizer.pad_id,
                             "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                             "model_config": OmegaConf.to_container(
                                 OmegaConf.merge(cfg.model, source["model_config"]) if source else cfg.model,
                                 resolve=True),
                             "numericalizer": numericalizer.state(),
                             "vocab_identity": numericalizer.identity()})

    if len(directions) > 1:
        ens = {}
        for split in ("valid", "test"):
            p = np.mean(probs[split], axis=0)
            ens.update({f"{'val' if split == 'valid' else 'test'}_{k}": v for k, v in scores(p, ys[split], multi).items()})
        results["ensemble"] = ens
    write_predictions(run.dir / "predictions_test.csv", data.test_texts, data.test_labels, classes,
                      directions, probs["test"], multi)
    majority = float(np.mean(ys["test"] == np.bincount(ys["train"][ys["train"] >= 0]).argmax())) if not multi else None
    return run.finish(results, started_from=str(source_dir) if source_dir else None, dataset=data.name,
                      classes=classes, majority_test_accuracy=majority, n_train=len(docs["train"]),
                      warnings=data.warnings)


def write_predictions(path, texts, labels, classes, directions, probs, multi) -> None:
    p = np.mean(probs, axis=0)
    df = pd.DataFrame({"label": ["|".join(l) if multi else l for l in labels]})
    df["prediction"] = ["|".join(classes[j] for j in np.nonzero(r >= 0.5)[0]) for r in p] if multi \
        else [classes[j] for j in p.argmax(1)]
    for j, c in enumerate(classes):
        df[f"p_{c}"] = p[:, j].round(5)
    df.to_csv(path, index=False)
