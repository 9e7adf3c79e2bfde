"""Language-model training shared by pretraining and target-task LM fine-tuning."""
from __future__ import annotations

import logging
import math

import torch

from ..data.batching import LMStream
from .model_io import lm_from, lm_payload
from ..models.heads import LanguageModel
from ..training.loop import StepOut
from ..training.param_groups import unfreeze_plan
from .context import RunContext
from .wiring import HiddenCarry, fit, make_trainer

log = logging.getLogger("ulmfit")
METRICS = ["val_loss", "val_accuracy", "val_perplexity"]  # what lm_eval returns, as callbacks= monitor them


def lm_step(alpha: float, beta: float, device: torch.device):
    """Cross-entropy + AR (alpha * L2 of the dropped last-layer output) + TAR (beta * L2 of its
    time differences), the regularisers of Merity et al.; computed in fp32
    (https://github.com/fastai/fastai/issues/1335: squared in fp16 they overflow).

    `forward` runs the model (the Trainer passes the model, or it wrapped in DistributedDataParallel).
    Every term is a mean over this process's tokens; with equal shares per rank, DDP's average
    of the ranks' gradients is the gradient of the one-process batch's loss."""

    def step(forward, batch) -> StepOut:
        x = batch.x.to(device, non_blocking=True)
        y = batch.y.to(device, non_blocking=True)
        ce, raw, dropped = forward(x, y)
        loss = ce
        if alpha:
            loss = loss + alpha * dropped.float().pow(2).mean()
        if beta and raw.size(1) > 1:
            loss = loss + beta * (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()
        return StepOut(loss, x.numel(), float(ce.detach()))

    return step


def lm_eval(stream: LMStream, device: torch.device, reduce=None):
    """Loss, accuracy and perplexity over `stream`; `reduce` sums the counts over data-parallel ranks."""

    def evaluate(model: LanguageModel) -> dict:
        model.reset()
        total, correct, n = 0.0, 0, 0
        for batch in stream.epoch(0):
            x, y = batch.x.to(device), batch.y.to(device)
            ce_sum, hits = model.score(x, y)
            total, correct, n = total + ce_sum, correct + hits, n + y.numel()
        model.reset()
        if reduce is not None:
            total, correct, n = reduce([total, correct, n])
        loss = total / max(n, 1)
        return {"loss": loss, "accuracy": correct / max(n, 1), "perplexity": math.exp(min(loss, 50))}

    return evaluate


def train_lms(ctx: RunContext, sources: dict, numericalizer, train_docs, valid_docs) -> dict:
    """Each direction's LM, new or from its source checkpoint (None: from scratch), trained and saved;
    a direction that a resumed run had finished is not trained again. Returns the results per direction."""
    results = {}
    for direction, source in sources.items():
        if (done := ctx.finished(direction)) is not None:
            results[direction] = done["result"]
            continue
        model = lm_from(ctx.cfg.model, numericalizer, source)
        results[direction] = train_lm(ctx, model, numericalizer, train_docs, valid_docs, direction)
    return results


def train_lm(ctx: RunContext, model: LanguageModel, numericalizer, train_docs, valid_docs, direction: str) -> dict:
    """Train one direction's LM with the configured schedule/unfreezing; save checkpoints/<direction>.pt.

    Data-parallel: every rank reads its rows of the same bs token streams (data/batching.py)."""
    cfg, ranks, t = ctx.cfg, ctx.ranks, ctx.cfg.train
    reverse = direction == "bwd"
    model.to(ctx.device)
    shard = dict(rank=ranks.rank, world_size=ranks.world_size)
    train = LMStream(train_docs, t.bs, t.bptt, seed=cfg.seed, shuffle=True, variable=t.variable_bptt, reverse=reverse,
                     **shard)
    valid = LMStream(valid_docs, t.eval_bs or t.bs, t.bptt, shuffle=False, variable=False, reverse=reverse, **shard)
    trainer = make_trainer(ctx, model, lm_step(t.alpha, t.beta, ctx.device),
                           lm_eval(valid, ctx.device, ranks.sum if ranks.enabled else None), direction, METRICS,
                           carry=HiddenCarry(model), lr_scale=lambda batch: batch.lr_scale)
    log.info("%s LM: %d train tokens, %d valid tokens, %d batches/epoch, vocab %d",
             direction, train.n_tokens, valid.n_tokens, len(train), len(numericalizer.itos))
    history = fit(ctx, trainer, train, unfreeze_plan(cfg.unfreeze, len(model.layer_groups()), t.epochs))
    # the last epoch's validation, or that of the epoch whose weights a callback (keep_best) put back
    final = next(r for r in reversed(history) if r["split"] == "valid"
                 and trainer.weights_epoch in (None, r["epoch"]))
    result = {"val_loss": final["loss"], "val_perplexity": final["perplexity"],
              "val_accuracy": final["accuracy"], "epochs": trainer.state.epoch,
              "train_tokens": train.n_tokens, **trainer.report}
    ctx.save(direction, lm_payload(model, numericalizer, cfg.model, direction, result))
    return result
