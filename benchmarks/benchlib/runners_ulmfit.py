"""ulmfit's runners: what its stages build, timed through the Trainer's own step.

The config is the stage's own (`ulmfit_cli.config.compose`, as `ulmfit pretrain` or `ulmfit
train-clf` would run with the bench's sizes as overrides); the model, optimiser, step function
and Trainer are built as stages/wiring.make_trainer builds them, less the run directory's
callbacks. A timed step is `trainer.train_step(batch)`: LR from the batch's scale, autocast,
loss, backward, clip, optimiser step, exactly as `Trainer.fit` takes it.
"""
from __future__ import annotations

from .common import N_CLASSES, PAD_ID
from .worker import Cycle

STAGE = {"lm": "pretrain", "clf": "train_clf", "predict": "train_clf"}


def overrides(spec) -> list[str]:
    s = spec["size"]
    return ["model=awd_lstm", f"model.emb_size={s['emb']}", f"model.hidden_size={s['hidden']}",
            f"model.n_layers={s['layers']}", f"train.bs={s['bs']}", f"train.bptt={s['bptt']}",
            f"train.max_len={s['max_len']}", f"precision={spec['precision']}", f"device={spec['device']}",
            f"seed={spec['seed']}"]


def prepare(spec):
    import ulmfit_cli.data.batching  # noqa: F401
    import ulmfit_cli.models  # noqa: F401
    import ulmfit_cli.stages.clf  # noqa: F401
    import ulmfit_cli.stages.lm  # noqa: F401
    import ulmfit_cli.stages.wiring  # noqa: F401
    from ulmfit_cli.config import compose

    cfg = compose(STAGE[spec["task"]], overrides(spec))
    return {"optimizer": "torch.AdamW (stages.wiring.make_optimizer)", "config": STAGE[spec["task"]]}, cfg


def trainer_for(cfg, model, step_fn, dev, **lm):
    """A Trainer wired as stages/wiring.make_trainer wires one on a single process."""
    from ulmfit_cli.stages.wiring import make_optimizer
    from ulmfit_cli.training.loop import Trainer
    from ulmfit_cli.training.schedules import make_schedule

    opt, lrs = make_optimizer(cfg, model.layer_groups())
    return Trainer(model, opt, lrs, make_schedule(cfg.schedule), step_fn, lambda m: {}, device=dev,
                   precision=cfg.precision, clip=cfg.train.clip, on_nan=cfg.train.on_nan, **lm)


def build_lm(cfg, dev, data, vocab):
    from ulmfit_cli.data.batching import LMBatch
    from ulmfit_cli.models import build_lm as build
    from ulmfit_cli.stages.lm import lm_step
    from ulmfit_cli.stages.wiring import HiddenCarry

    model = build(cfg.model, vocab, PAD_ID).to(dev).train()
    trainer = trainer_for(cfg, model, lm_step(cfg.train.alpha, cfg.train.beta, dev), dev,
                          carry=HiddenCarry(model), lr_scale=lambda batch: batch.lr_scale)
    batches = Cycle(LMBatch(x, y) for x, y in data)
    return (lambda: trainer.train_step(batches()).units), model


def build_clf(cfg, dev, data, vocab, bs):
    from ulmfit_cli.data.batching import ClassifierBatches
    from ulmfit_cli.models import build_classifier
    from ulmfit_cli.stages.clf import clf_step

    docs, labels = data
    model = build_classifier(cfg.model, vocab, PAD_ID, N_CLASSES, cfg.train.bptt, cfg.train.max_len)
    model = model.to(dev).train()
    trainer = trainer_for(cfg, model, clf_step(dev, False), dev)
    batches = Cycle(ClassifierBatches(docs, labels, bs, PAD_ID, cfg.train.bptt, seed=cfg.seed).epoch(0))
    return (lambda: trainer.train_step(batches()).units), model


def build_predict(cfg, dev, data, vocab, bs):
    """What `ulmfit predict` calls: predict_proba over one batch of documents."""
    from ulmfit_cli.models import build_classifier
    from ulmfit_cli.stages.clf import predict_proba

    docs = data[0][:bs]
    model = build_classifier(cfg.model, vocab, PAD_ID, N_CLASSES, cfg.train.bptt, cfg.train.max_len).to(dev)

    def step():
        probs = predict_proba(model, docs, bs=bs, pad_id=PAD_ID, reverse=False, device=dev, precision=cfg.precision)
        assert probs.shape == (bs, N_CLASSES)
        return bs

    return step, model


def build(spec, dev, data, cfg):
    vocab = spec["size"]["vocab"]
    if spec["task"] == "lm":
        step, model = build_lm(cfg, dev, data, vocab)
    elif spec["task"] == "clf":
        step, model = build_clf(cfg, dev, data, vocab, spec["bs"])
    else:
        step, model = build_predict(cfg, dev, data, vocab, spec["bs"])
    return step, {}, model
