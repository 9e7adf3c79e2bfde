"""Language-model training shared by pretraining and target-task LM fine-tuning."""
from __future__ import annotations

import logging
import math
import signal
from dataclasses import asdict

import numpy as np
import torch
from omegaconf import OmegaConf

from .. import distributed
from ..data.batching import LMStream
from ..data.token_cache import cached_encode
from ..models import build_lm
from ..models.heads import LanguageModel
from ..training.loop import StepOut, Trainer
from ..training.param_groups import discriminative_lrs, group_params, unfreeze_plan
from ..training.schedules import make_schedule
from ..errors import UserError
from .common import Run

log = logging.getLogger("ulmfit")

MODEL_SIZE_KEYS = ("emb_size", "hidden_size", "n_layers", "tie_weights")


def lm_step(alpha: float, beta: float, device: torch.device, forward=None):
    """Cross-entropy + AR (alpha * L2 of the dropped last-layer output) + TAR (beta * L2 of its
    time differences), the regularisers of Merity et al.; computed in fp32 (fastai#1335).

    `forward` (default: the model itself) runs the model, e.g. through DistributedDataParallel.
    Every term is a mean over this process's tokens; with equal shares per rank, DDP's average
    of the ranks' gradients is the gradient of the one-process batch's loss."""

    def step(model: LanguageModel, batch) -> StepOut:
        x = batch.x.to(device, non_blocking=True)
        y = batch.y.to(device, non_blocking=True)
        ce, raw, dropped = (forward or model)(x, y)
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


def make_optimizer(cfg, groups) -> tuple[torch.optim.Optimizer, list[float]]:
    """Adam(beta1, beta2) with decoupled weight decay and one param group per layer group."""
    params = group_params(groups)
    sc = cfg.schedule
    lrs = discriminative_lrs(sc.lr, len(params), sc.decay if sc.discriminative else 1.0)
    opt = torch.optim.AdamW(
        [{"params": p, "lr": lr} for p, lr in zip(params, lrs)],
        betas=(cfg.train.beta1, cfg.train.beta2), eps=cfg.train.eps, weight_decay=cfg.train.weight_decay,
    )
    return opt, lrs


def encode(numericalizer, texts: list[str], cache_dir=None) -> list[np.ndarray]:
    """Token ids per text; cached on disk under `cache_dir` (see data/token_cache.py) unless None."""
    return cached_encode(numericalizer, texts, cache_dir, workers=2 if len(texts) > 20000 else 1)


def train_lm(run: Run, model: LanguageModel, numericalizer, train_docs, valid_docs, direction: str,
             started_from: str | None = None) -> dict:
    """Train one direction's LM with the configured schedule/unfreezing; save checkpoints/<direction>.pt."""
    cfg = run.cfg
    t = cfg.train
    reverse = direction == "bwd"
    ctx = distributed.current()
    model.to(run.device)
    shard = dict(rank=ctx.rank, world_size=ctx.world_size)
    train = LMStream(train_docs, t.bs, t.bptt, seed=cfg.seed, shuffle=True, variable=t.variable_bptt, reverse=reverse,
                     **shard)
    valid = LMStream(valid_docs, t.eval_bs or t.bs, t.bptt, shuffle=False, variable=False, reverse=reverse, **shard)
    groups = model.layer_groups()
    opt, lrs = make_optimizer(cfg, groups)
    forward = DDPForward(model, run.device) if ctx.enabled else None
    trainer = Trainer(
        model, opt, lrs, make_schedule(cfg.schedule), lm_step(t.alpha, t.beta, run.device, forward),
        lm_eval(valid, run.device, ctx.sum if ctx.enabled else None), device=run.device,
        precision=run.precision, clip=t.clip, on_nan=t.on_nan, log_row=run.log_row(direction),
        progress=run.progress, max_steps_per_epoch=t.max_steps_per_epoch, collective=ctx,
    )
    if ctx.enabled:
        reseed_rank(cfg.seed, ctx.rank, 0)
    phases = unfreeze_plan(cfg.unfreeze, len(groups), t.epochs)
    track_progress(run, trainer, direction)
    log.info("%s LM: %d train tokens, %d valid tokens, %d batches/epoch, vocab %d",
             direction, train.n_tokens, valid.n_tokens, len(train), len(numericalizer.itos))
    with stop_on_signal(trainer):
        history = trainer.fit(train, phases)
    if trainer.stop_requested:  # asked during the last evaluation: saved at its epoch's end
        raise Interrupted(run.dir)
    final = next(r for r in reversed(history) if r["split"] == "valid")
    result = {"val_loss": final["loss"], "val_perplexity": final["perplexity"],
              "val_accuracy": final["accuracy"], "epochs": trainer.state.epoch,
              "train_tokens": train.n_tokens}
    run.save(direction, {**lm_payload(model, numericalizer, cfg, direction), "result": result})
    return result


class DDPForward:
    """The model called through DistributedDataParallel (gradients averaged over the ranks).

    DDP fixes the parameters it synchronises when it is built, so it is rebuilt whenever the
    trainable set changes (gradual unfreezing). The LM's hidden state is an attribute of the
    wrapped model, carried per rank (each rank holds its own streams)."""

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.model, self.device = model, device
        self.ddp, self.key = None, None

    def __call__(self, *inputs):
        key = tuple(p.requires_grad for p in self.model.parameters())
        if key != self.key:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = None  # drop the old reducer's hooks first
            self.ddp = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            self.key = key
        return self.ddp(*inputs)


def reseed_rank(seed: int, rank: int, step: int) -> None:
    """Ranks > 0 draw their own dropout masks (rank 0 keeps the one-process sequence)."""
    if rank > 0:
        torch.manual_seed(int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0]))


def track_progress(run: Run, trainer: Trainer, direction: str) -> None:
    """Resume from the newest progress checkpoint if asked; save one every N steps, every epoch
    and on SIGINT/SIGTERM (then exit, pointing at resume=).

    Data-parallel: every rank loads rank 0's checkpoint (the same weights, optimiser and
    position) and takes its own rows of the saved hidden state; saving gathers the ranks'
    hidden states into the one-process layout, and only rank 0 writes."""
    ctx = distributed.current()
    state = run.load_progress(direction)
    if state is not None:
        if ctx.enabled and state.get("hidden") is not None:
            state = {**state, "hidden": [[ctx.my_rows(h), ctx.my_rows(c)] for h, c in state["hidden"]]}
        trainer.load_state_dict(state)
        if ctx.enabled:
            reseed_rank(run.cfg.seed, ctx.rank, trainer.state.global_step)
    every = run.cfg.checkpoint.every_steps

    def save(tr: Trainer) -> None:
        hidden = getattr(tr.model, "hidden", None)
        if ctx.enabled and hidden is not None:  # a collective: every rank takes part
            hidden = [ctx.gather_rows([h, c]) for h, c in hidden]
        if ctx.is_rank0:
            state = tr.state_dict()
            if ctx.enabled:
                state["hidden"] = hidden
            run.save_progress(direction, state)

    def on_step(tr: Trainer) -> None:
        if tr.stopping or (every and tr.state.global_step % every == 0):
            save(tr)
        if tr.stopping:
            ctx.barrier()  # no rank exits (which makes torchrun stop the others) before rank 0 has saved
            raise Interrupted(run.dir)

    def on_epoch_end(tr: Trainer, row: dict) -> None:
        save(tr)

    trainer.on_step, trainer.on_epoch_end = on_step, on_epoch_end


class Interrupted(UserError):
    exit_code = 130

    def __init__(self, run_dir):
        super().__init__(f"Stopped by a signal; progress saved in {run_dir}/checkpoints/last.",
                         f"Continue exactly where it stopped with resume={run_dir}.")


def lm_payload(model: LanguageModel, numericalizer, cfg, direction: str) -> dict:
    enc = model.encoder
    # the sizes of the model itself: a pretrained source fixes them, whatever cfg.model says
    sizes = {"emb_size": enc.emb_size, "hidden_size": enc.hidden_size, "n_layers": enc.n_layers,
             "tie_weights": model.decoder.weight is enc.encoder.weight}
    return {
        "kind": "lm",
        "direction": direction,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_config": {**OmegaConf.to_container(cfg.model, resolve=True), **sizes},
        "numericalizer": numericalizer.state(),
        "vocab_identity": numericalizer.identity(),
    }


def build_lm_from(cfg, numericalizer, source: dict | None = None) -> LanguageModel:
    """A fresh LM for this vocabulary; with `source`, the architecture sizes come from the source
    checkpoint (its weights fix them) and its rows are mapped onto this vocabulary."""
    model_cfg = cfg.model
    if source is not None:
        model_cfg = OmegaConf.merge(cfg.model, {k: source["model_config"][k] for k in MODEL_SIZE_KEYS})
    model = build_lm(model_cfg, len(numericalizer.itos), numericalizer.pad_id)
    if source is not None:
        load_lm_weights(model, source, numericalizer)
    return model


def load_lm_weights(model: LanguageModel, source: dict, numericalizer) -> None:
    from ..data.tokenizers import map_bias, map_embeddings

    state = dict(source["model"])
    old_itos = source["numericalizer"]["itos"]
    if old_itos != list(numericalizer.itos):
        emb, found = map_embeddings(state["encoder.encoder.weight"], old_itos, list(numericalizer.itos))
        state["encoder.encoder.weight"] = emb
        if "decoder.weight" in state:
            state["decoder.weight"] = emb
        state["decoder.bias"], _ = map_bias(state["decoder.bias"], old_itos, list(numericalizer.itos))
        log.info("vocabulary mapped onto the pretrained one: %d of %d tokens known, the rest start at the mean embedding",
                 found, len(numericalizer.itos))
    model.load_state_dict(state)


class stop_on_signal:
    """SIGINT/SIGTERM ask the trainer to stop after the current batch, so the stage can save."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        # Under DDP the launcher (torchrun) forwards the terminal's SIGINT a second time, and a SLURM
        # job's SIGUSR2 (time limit / preemption) reaches the worker processes too: both mean "save
        # and stop", never "die now" (torchrun kills the processes itself if they take too long).
        self.ddp = distributed.current().enabled
        self.signals = (signal.SIGINT, signal.SIGTERM) + ((signal.SIGUSR2,) if self.ddp else ())

    def __enter__(self):
        self.old = {}
        for sig in self.signals:
            try:
                self.old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread (e.g. some launchers)
                pass
        return self

    def _handler(self, signum, frame):
        if self.trainer.stop_requested:
            if self.ddp:
                return
            raise KeyboardInterrupt
        log.warning("signal %d: finishing the current batch, then saving and exiting", signum)
        self.trainer.stop_requested = True

    def __exit__(self, *exc):
        for sig, h in self.old.items():
            signal.signal(sig, h)
        return False
