"""Stage 3 (paper §3.3): target-task classifier fine-tuning.

Put two linear blocks with concat pooling on the fine-tuned encoder, then train with gradual
unfreezing, discriminative LRs, STLR and BPT3C; one classifier per direction, and for
`bidirectional=both` average their probabilities.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from .. import distributed
from ..data import load_dataset
from ..data.batching import MIN_ROWS, ClassifierBatches
from ..data.tokenizers import fit_numericalizer, numericalizer_from_state
from ..data.token_cache import token_cache_dir
from ..errors import UserError
from ..training.loop import Trainer
from ..training.param_groups import unfreeze_plan
from ..training.schedules import make_schedule
from .clf import (all_negative_f1, build_classifier_for, clf_step, load_encoder_from_lm, most_frequent_label_f1,
                  scores, sharded_predict_proba, tune_threshold)
from .common import Run, find_source_run, load_lm_checkpoint
from .lm import DDPForward, Interrupted, encode, make_optimizer, reseed_rank, stop_on_signal, track_progress

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
    ctx = distributed.current()
    if len(docs["train"]) < MIN_ROWS * ctx.world_size:
        raise UserError(f"The training split has {len(docs['train'])} document(s); a classifier batch needs at least "
                        f"{MIN_ROWS} per process (BatchNorm's batch statistics) on {ctx.world_size} process(es).",
                        "Give more training documents (or lower dataset.valid_frac).")
    results, probs = {}, {"valid": [], "test": []}
    for direction in directions:
        if (done := run.finished(direction)) is not None:  # resumed past this direction
            results[direction] = done["result"]
            for split in ("valid", "test"):
                probs[split].append(done["probs"][split].numpy())
            threshold = done["threshold"]
            continue
        reverse = direction == "bwd"
        source = sources[direction]
        model = build_classifier_for(cfg, len(classes), len(numericalizer.itos), numericalizer.pad_id,
                                     source["model_config"] if source else None)
        if source:
            load_encoder_from_lm(model, source)
        if ctx.enabled and run.device.type == "cuda":  # batch statistics over the global batch (no CPU kernel)
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.to(run.device)
        groups = model.layer_groups()
        opt, lrs = make_optimizer(cfg, groups)
        train = ClassifierBatches(docs["train"], ys["train"], t.bs, numericalizer.pad_id, t.bptt, seed=cfg.seed,
                                  reverse=reverse, rank=ctx.rank, world_size=ctx.world_size)

        def proba(m, split):
            ctx.broadcast_buffers(m)
            return sharded_predict_proba(m, docs[split], ctx, bs=eval_bs, pad_id=numericalizer.pad_id, reverse=reverse,
                                         device=run.device, precision=run.precision, multi_label=multi)

        seen = {}  # split -> (global step, probabilities) of the latest evaluation

        def evaluate(m, split="valid"):
            p = proba(m, split)
            seen[split] = (trainer.state.global_step, p)
            return scores(p, ys[split], multi, tune_threshold(p, ys[split]) if multi else 0.5)

        def final_proba(split):
            # the last epoch's evaluation already scored these weights unless a step came after it
            step, p = seen.get(split, (None, None))
            return p if step == trainer.state.global_step else proba(model, split)

        forward = DDPForward(model, run.device) if ctx.enabled else None
        trainer = Trainer(model, opt, lrs, make_schedule(cfg.schedule), clf_step(run.device, multi, forward), evaluate,
                          device=run.device, precision=run.precision, clip=t.clip, on_nan=t.on_nan,
                          log_row=run.log_row(direction), progress=run.progress,
                          max_steps_per_epoch=t.max_steps_per_epoch, collective=ctx)
        if ctx.enabled:
            reseed_rank(cfg.seed, ctx.rank, 0)
        track_progress(run, trainer, direction)
        with stop_on_signal(trainer):
            trainer.fit(train, unfreeze_plan(cfg.unfreeze, len(groups), t.epochs))
        if trainer.stop_requested:  # asked during the last evaluation: saved at its epoch's end
            raise Interrupted(run.dir)
        for split in ("valid", "test"):
            probs[split].append(final_proba(split))
        res, threshold = split_scores(probs["valid"][-1], probs["test"][-1], ys, multi)
        run.metrics({"direction": direction, "epoch": trainer.state.epoch, "step": trainer.state.global_step,
                     "split": "test", "loss": res["test_loss"], "accuracy": res["test_accuracy"],
                     **({"f1_micro": res["test_f1_micro"], "f1_macro": res["test_f1_macro"]} if multi else {}),
                     "elapsed_s": round(trainer.elapsed(), 3)})
        results[direction] = res
        run.save(direction, {"kind": "clf", "direction": direction, "classes": classes, "multi_label": multi,
                             "threshold": threshold,
                             "pad_id": numericalizer.pad_id,
                             "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                             "model_config": OmegaConf.to_container(
                                 OmegaConf.merge(cfg.model, source["model_config"]) if source else cfg.model,
                                 resolve=True),
                             "numericalizer": numericalizer.state(),
                             "vocab_identity": numericalizer.identity(),
                             "result": res,
                             "probs": {s: torch.from_numpy(probs[s][-1]) for s in ("valid", "test")}})

    if len(directions) > 1:
        results["ensemble"], threshold = split_scores(np.mean(probs["valid"], axis=0), np.mean(probs["test"], axis=0),
                                                      ys, multi)
    if run.writes:
        write_predictions(run.dir / "predictions_test.csv", data.test_texts, data.test_labels, classes,
                          probs["test"], multi, threshold)
    return run.finish(results, started_from=str(source_dir) if source_dir else None, dataset=data.name,
                      classes=classes, n_train=len(docs["train"]), warnings=data.warnings, **baselines(ys, multi))


def split_scores(p_valid: np.ndarray, p_test: np.ndarray, ys: dict, multi: bool) -> tuple[dict, float | None]:
    """val_* and test_* scores; a multi-label threshold is tuned on validation only, then applied to test."""
    threshold = tune_threshold(p_valid, ys["valid"]) if multi else None
    res = {}
    for prefix, p, y in (("val", p_valid, ys["valid"]), ("test", p_test, ys["test"])):
        res.update({f"{prefix}_{k}": v for k, v in scores(p, y, multi, threshold or 0.5).items()})
    return res, threshold


def baselines(ys: dict, multi: bool) -> dict:
    """What a model that ignores the text scores on test: the bar every classifier must clear."""
    if multi:
        return {"all_negative_test_f1_micro": all_negative_f1(ys["test"]),
                "most_frequent_label_test_f1_micro": most_frequent_label_f1(ys["train"], ys["test"])}
    return {"majority_test_accuracy": float(np.mean(ys["test"] == np.bincount(ys["train"][ys["train"] >= 0]).argmax()))}


def write_predictions(path, texts, labels, classes, probs, multi, threshold) -> None:
    p = np.mean(probs, axis=0)
    df = pd.DataFrame({"text": texts, "label": ["|".join(l) if multi else l for l in labels]})
    df["prediction"] = ["|".join(classes[j] for j in np.nonzero(r >= threshold)[0]) for r in p] if multi \
        else [classes[j] for j in p.argmax(1)]
    for j, c in enumerate(classes):
        df[f"p_{c}"] = p[:, j].round(5)
    df.to_csv(path, index=False)
