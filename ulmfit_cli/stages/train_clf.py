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

from ..data import load_dataset
from ..data.batching import MIN_ROWS, ClassifierBatches
from ..data.token_cache import encode, token_cache_dir
from ..data.tokenizers import fit_numericalizer, numericalizer_from_state
from ..errors import UserError
from ..models import classifier_group_count
from .model_io import classifier_from, clf_payload, sized_like
from ..training.param_groups import UNFREEZE, Phase, unfreeze_plan
from ..training.scoring import scores, tune_threshold
from .baselines import check_beats, majority, tfidf_logreg
from .clf import clf_step, label_ids, sharded_predict_proba
from .context import RunContext
from .sources import source_lms, source_scores
from .wiring import check_callbacks, fit, make_trainer

log = logging.getLogger("ulmfit")
SPLITS = ("train", "valid", "test")


def run(ctx: RunContext) -> dict:
    cfg = ctx.cfg
    directions = list(cfg.bidirectional.directions)
    check_callbacks(cfg, validation_metrics(bool(cfg.dataset.multi_label)))
    source_dir, sources = source_lms(ctx, "lm")
    data = labelled_dataset(cfg)
    multi, classes = bool(cfg.dataset.multi_label), list(data.classes)
    src = sources[directions[0]]
    numericalizer = (numericalizer_from_state(src["numericalizer"]) if src
                     else fit_numericalizer(data.train_texts, cfg.tokenizer))
    cache = token_cache_dir(cfg)
    docs = {s: encode(numericalizer, getattr(data, f"{s}_texts"), cache) for s in SPLITS}
    ys = {s: label_ids(getattr(data, f"{s}_labels"), classes, multi) for s in SPLITS}
    check_enough_documents(len(docs["train"]), ctx.ranks.world_size)
    plan = unfreeze_plan(cfg.unfreeze, classifier_group_count(sized_like(cfg.model, src)), cfg.train.epochs)
    short = short_budget_warning(plan, cfg.unfreeze, cfg.train.epochs)

    results, probs, threshold = {}, {"valid": [], "test": []}, None
    for direction in directions:
        done = ctx.finished(direction) or train_direction(ctx, direction, sources[direction], numericalizer,
                                                          docs, ys, classes, plan)
        results[direction], threshold = done["result"], done["threshold"]
        for split in probs:
            probs[split].append(torch.as_tensor(done["probs"][split]).numpy())
    if len(directions) > 1:
        results["ensemble"], threshold = split_scores(np.mean(probs["valid"], axis=0), np.mean(probs["test"], axis=0),
                                                      ys, multi)
    warnings, linear = list(data.warnings) + ([short] if short else []), {}
    predictions = ctx.dir / "predictions_test.csv"
    if ctx.writes:
        write_predictions(predictions, data.test_texts, data.test_labels, classes, probs["test"], multi, threshold)
        if cfg.tfidf_baseline:
            linear = {"tfidf_lr": tfidf_logreg({s: getattr(data, f"{s}_texts") for s in SPLITS}, ys, multi, cfg.seed)}
            warnings += check_beats(results, linear["tfidf_lr"], multi)
    return ctx.finish(results, started_from=source_dir, artifacts=(predictions,), dataset=data.name, classes=classes,
                      n_train=len(docs["train"]), warnings=warnings, baselines=linear, **majority(ys, multi),
                      lm_results=source_scores(source_dir, directions))


def train_direction(ctx: RunContext, direction: str, source: dict | None, numericalizer, docs: dict, ys: dict,
                    classes: list[str], plan: list[Phase]) -> dict:
    """Train, score and save one direction's classifier; returns its checkpoint payload."""
    cfg, t, ranks = ctx.cfg, ctx.cfg.train, ctx.ranks
    multi = bool(cfg.dataset.multi_label)
    model = classifier_from(cfg.model, numericalizer, len(classes), t.bptt, t.max_len, source)
    if ranks.enabled and ctx.device.type == "cuda":  # batch statistics over the global batch (no CPU kernel)
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(ctx.device)
    scorer = SplitScorer(ctx, model, docs, numericalizer.pad_id, reverse=direction == "bwd", multi_label=multi)
    train = ClassifierBatches(docs["train"], ys["train"], t.bs, numericalizer.pad_id, t.bptt, seed=cfg.seed,
                              reverse=direction == "bwd", rank=ranks.rank, world_size=ranks.world_size)
    trainer = make_trainer(ctx, model, clf_step(ctx.device, multi), scorer.validation_scores(ys["valid"]), direction,
                           validation_metrics(multi))
    history = fit(ctx, trainer, train, plan)
    last_eval_is_current = (bool(history) and history[-1]["step"] == trainer.state.global_step
                            and trainer.weights_epoch is None)  # keep_best may have put back an earlier epoch
    p = {"valid": scorer.proba("valid", reuse_last=last_eval_is_current), "test": scorer.proba("test")}
    result, threshold = split_scores(p["valid"], p["test"], ys, multi)
    result.update(trainer.report)
    epoch = trainer.weights_epoch or trainer.state.epoch  # the epoch whose weights are scored
    step = next((r["step"] for r in history if r["epoch"] == epoch), trainer.state.global_step)
    ctx.log_row(direction)({"epoch": epoch, "step": step, "split": "test",
                            "loss": result["test_loss"], "accuracy": result["test_accuracy"],
                            **({"f1_micro": result["test_f1_micro"], "f1_macro": result["test_f1_macro"]} if multi else {}),
                            "elapsed_s": round(trainer.elapsed(), 3)})
    payload = clf_payload(model, numericalizer, sized_like(cfg.model, source), direction, classes=classes,
                          multi_label=multi, threshold=threshold, result=result, probs=p)
    ctx.save(direction, payload)
    return payload


def validation_metrics(multi: bool) -> list[str]:
    """What SplitScorer.validation_scores returns, as callbacks= monitor it."""
    return ["val_loss", "val_accuracy", "val_error"] + (["val_f1_micro", "val_f1_macro"] if multi else [])


class SplitScorer:
    """Class probabilities of a split under the model's current weights (sharded over the ranks).
    The last validation pass is kept, so the final scores need not predict it again."""

    def __init__(self, ctx: RunContext, model, docs: dict, pad_id: int, *, reverse: bool, multi_label: bool):
        self.ctx, self.model, self.docs = ctx, model, docs
        self.kw = dict(bs=ctx.cfg.train.eval_bs or ctx.cfg.train.bs, pad_id=pad_id, reverse=reverse,
                       device=ctx.device, precision=ctx.precision, multi_label=multi_label)
        self.last_valid: np.ndarray | None = None

    def proba(self, split: str, reuse_last: bool = False) -> np.ndarray:
        if split == "valid" and reuse_last and self.last_valid is not None:
            return self.last_valid
        self.ctx.ranks.broadcast_buffers(self.model)
        p = sharded_predict_proba(self.model, self.docs[split], self.ctx.ranks, **self.kw)
        if split == "valid":
            self.last_valid = p
        return p

    def validation_scores(self, gold: np.ndarray):
        """The Trainer's eval_fn: loss and accuracy (and F1 at the tuned threshold) on validation."""
        multi = self.kw["multi_label"]

        def evaluate(model) -> dict:
            p = self.proba("valid")
            return scores(p, gold, multi, tune_threshold(p, gold) if multi else 0.5)

        return evaluate


def labelled_dataset(cfg):
    data = load_dataset(cfg.dataset, cfg.data_root, lm_files=False)  # unlabelled text is finetune-lm's
    if not data.labelled:
        raise UserError(f"dataset={data.name} has no labels, so no classifier can be trained on it.",
                        "Pick a labelled dataset (e.g. dataset=trec6) or set dataset.label_col=<column>.")
    for w in data.warnings:
        log.warning(w)
    return data


def short_budget_warning(plan: list[Phase], unfreeze, asked: int) -> str | None:
    """Gradual unfreezing pays off when the encoder then trains to convergence (paper §3.3); with a
    budget where most epochs train a partly frozen model, the encoder hardly moves. Each phase gets
    its epochs and all layers at least one, so fewer train.epochs than that run longer: say so."""
    partial = sum(p.epochs for p in plan if not all(p.trainable))
    full = sum(p.epochs for p in plan if all(p.trainable))
    longer = (f"train.epochs={asked} is fewer than its {len(plan) - 1} phase(s) and one epoch of all layers "
              f"need, so this run trains {partial + full} epochs, not {asked}.") if partial + full > asked else ""
    if not UNFREEZE[unfreeze.name].info["thaws_in_phases"] or partial <= full:
        msg = f"unfreeze={unfreeze.name}: {longer}" if longer else None
    else:
        msg = (f"unfreeze={unfreeze.name} spends {partial} of the {partial + full} epochs on a partly frozen "
               f"model and trains all layers for {full}. {longer + ' ' if longer else ''}With so few epochs the "
               f"encoder hardly learns (on small data it can lose to a classifier trained from scratch). Give more "
               f"epochs (train.epochs={2 * partial} or more), or open the groups sooner (unfreeze.steps=[1,2], "
               f"or unfreeze=none).")
    if msg:
        log.warning(msg)
    return msg


def check_enough_documents(n_train: int, world_size: int) -> None:
    if n_train < MIN_ROWS * world_size:
        raise UserError(f"The training split has {n_train} document(s); a classifier batch needs at least "
                        f"{MIN_ROWS} per process (BatchNorm's batch statistics) on {world_size} process(es).",
                        "Give more training documents (or lower dataset.valid_frac).")


def split_scores(p_valid: np.ndarray, p_test: np.ndarray, ys: dict, multi: bool) -> tuple[dict, float | None]:
    """val_* and test_* scores; a multi-label threshold is tuned on validation only, then applied to test."""
    threshold = tune_threshold(p_valid, ys["valid"]) if multi else None
    res = {}
    for prefix, p, y in (("val", p_valid, ys["valid"]), ("test", p_test, ys["test"])):
        res.update({f"{prefix}_{k}": v for k, v in scores(p, y, multi, threshold or 0.5).items()})
    return res, threshold


def write_predictions(path, texts, labels, classes, probs, multi, threshold) -> None:
    p = np.mean(probs, axis=0)
    df = pd.DataFrame({"text": texts, "label": ["|".join(l) if multi else l for l in labels]})
    df["prediction"] = ["|".join(classes[j] for j in np.nonzero(r >= threshold)[0]) for r in p] if multi \
        else [classes[j] for j in p.argmax(1)]
    for j, c in enumerate(classes):
        df[f"p_{c}"] = p[:, j].round(5)
    df.to_csv(path, index=False)
