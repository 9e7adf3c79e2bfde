"""fastai's side of the end-to-end bench (benchlib/e2e.py), run in fastai's interpreter: its own
Learner loops over the ids the ulmfit run reads, cut after N batches by a Callback that times them.

  pretrain     `language_model_learner(..., pretrained=False)`, `learn.fit(1)`
  finetune-lm  `language_model_learner(..., pretrained_fnames=['lstm_fwd', 'itos_fwd'])` from the
               `ulmfit export-fastai` folder of the pretrain run (match_embeds maps it onto the
               target vocabulary by token), `unfreeze()`, `fit_one_cycle(1)`
  train-clf, predict: benchlib/e2e_fastai_clf.py

Imports only the stdlib at module level.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .common import ALPHA, BETA, DROPS, LM_CLIP, OPT, PAD_ID

BF16_NOTE = ("learn.to_bf16()'s MixedPrecision(AMPMode.BF16), with autocast on the run's device (fastai "
             "2.8.12's own autocasts only 'cuda')")
DECAY = 2.6  # discriminative LRs down the layer groups, as ulmfit's schedule.decay


def timer_callback(steps: int, per_row: bool):
    """A Callback that times what ulmfit's Trainer times: the intervals between step ends (from
    the start of each training loop) and each loop's wall time, from before_fit to after_train,
    summed over fits; it stops training after `steps` batches (validation then runs, as ulmfit
    evaluates at the end of its epoch). Units are tokens, or rows (documents) with `per_row`;
    `tokens` counts the ids that are not padding, in training and (eval_*) in evaluation.
    get_preds runs before_fit and after_fit too (the Learner is its context manager), with no
    training: only a fit that trained adds its validation to eval_s."""
    from fastai.callback.core import Callback, CancelTrainException

    class Timer(Callback):
        order = 100  # after Recorder and every other after_batch: the step is complete

        def __init__(self):
            super().__init__()
            self.units, self.tokens, self.steps_done, self.eval_units, self.eval_tokens = 0, 0, 0, 0, 0
            self.seconds, self.loop_s, self.eval_s, self.trained = 0.0, 0.0, 0.0, False

        def before_fit(self):
            self.t_fit, self.n, self.trained = time.perf_counter(), 0, False

        def before_train(self):
            self.t_last, self.trained = time.perf_counter(), True

        def after_batch(self):
            x = self.xb[0]
            units, real = (x.size(0) if per_row else x.numel()), int((x != PAD_ID).sum())
            if not self.training:
                self.eval_units, self.eval_tokens = self.eval_units + units, self.eval_tokens + real
                return
            now = time.perf_counter()
            self.units, self.tokens = self.units + units, self.tokens + real
            self.seconds += now - self.t_last
            self.t_last, self.n, self.steps_done = now, self.n + 1, self.steps_done + 1
            if self.n >= steps:
                raise CancelTrainException()

        def after_train(self):
            self.t_train_end = time.perf_counter()
            self.loop_s += self.t_train_end - self.t_fit

        def after_validate(self):
            if self.trained:
                self.eval_s += time.perf_counter() - self.t_train_end

    return Timer()


def lm_dataloaders(torch, spec):
    """LMDataLoaders over the saved ids (documents as fastai's LMDataLoader takes them); the
    vocabulary's strings where the weights are mapped onto it (finetune-lm)."""
    import numpy as np
    from fastai.data.core import DataLoaders
    from fastai.text.data import LMDataLoader

    z = np.load(spec["ids"])
    s = spec["size"]

    def docs(split):
        ids, lens = torch.from_numpy(z[f"{split}_ids"].astype(np.int64)), z[f"{split}_lens"].tolist()
        return list(torch.split(ids, lens))

    train = LMDataLoader(docs("train"), bs=s["bs"], seq_len=s["bptt"], shuffle=True, drop_last=True)
    valid = LMDataLoader(docs("valid"), bs=s["bs"], seq_len=s["bptt"], shuffle=False)
    dls = DataLoaders(train, valid, device=torch.device(spec["device"]))
    dls.vocab = [str(t) for t in z["itos"]] if "itos" in z else [f"w{i}" for i in range(spec["vocab"])]
    return dls


def adam():
    """fastai's Adam with ulmfit's betas and eps (both optimisers do the same arithmetic)."""
    from functools import partial

    from fastai.optimizer import Adam

    return partial(Adam, mom=OPT["beta1"], sqr_mom=OPT["beta2"], eps=OPT["eps"])


def finish_learner(torch, learn, spec):
    """No progress bar (as ulmfit's progress=none); bf16 as learn.to_bf16() would, on the device."""
    import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle, as fastai.text.all does)
    from fastai.callback.progress import ProgressCallback

    learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, ProgressCallback)])
    if spec["precision"] == "bf16":
        learn.add_cb(bf16_callback(torch, torch.device(spec["device"])))
    return learn


def lm_learner(torch, spec, timer):
    from fastai.callback.training import GradientClip
    from fastai.metrics import Perplexity, accuracy
    from fastai.text.learner import language_model_learner
    from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_lm_config

    s = spec["size"]
    config = {**awd_lstm_lm_config, "emb_sz": s["emb"], "n_hid": s["hidden"], "n_layers": s["layers"],
              "pad_token": PAD_ID, **DROPS}
    export = Path(spec["export"]) if spec.get("export") else None
    weights = dict(pretrained_fnames=["lstm_fwd", "itos_fwd"], path=export.parent, model_dir=export.name) if export \
        else {}
    learn = language_model_learner(lm_dataloaders(torch, spec), AWD_LSTM, config=config, pretrained=False,
                                   drop_mult=1.0, opt_func=adam(), wd=OPT["weight_decay"], alpha=ALPHA, beta=BETA,
                                   metrics=[accuracy, Perplexity()], cbs=[GradientClip(LM_CLIP), timer], **weights)
    if export:
        learn.unfreeze()  # loading froze all but the embedding/decoder; ulmfit's finetune-lm trains every layer
    return finish_learner(torch, learn, spec)


def bf16_callback(torch, dev):
    """`learn.to_bf16()`'s MixedPrecision, autocasting on `dev`: fastai 2.8.12 enters
    autocast('cuda') whatever the device, so on a CPU its bf16 would silently train in fp32."""
    from fastai.callback.fp16 import AMPMode, MixedPrecision

    class DeviceMixedPrecision(MixedPrecision):
        def before_fit(self):
            super().before_fit()
            self.autocast = torch.autocast(device_type=dev.type, dtype=torch.bfloat16)

    return DeviceMixedPrecision(amp_mode=AMPMode.BF16)


def timed_figures(timer, fit_s: float) -> dict:
    """What every training command reports: its own throughput, loop and eval seconds, units."""
    return {"throughput": timer.units / timer.seconds, "loop_s": timer.loop_s, "eval_s": timer.eval_s,
            "fit_s": fit_s, "units_seen": timer.units, "tokens_seen": timer.tokens, "steps_seen": timer.steps_done}


def run_lm(torch, spec) -> dict:
    timer = timer_callback(spec["steps"], per_row=False)
    learn = lm_learner(torch, spec, timer)
    t0 = time.perf_counter()
    if spec.get("export"):  # fine-tuning, as fastai's ULMFiT does it: one cycle, discriminative LRs
        learn.fit_one_cycle(1, slice(OPT["lr"] / DECAY ** 3, OPT["lr"]))
    else:
        learn.fit(1, lr=OPT["lr"])
    fit_s = time.perf_counter() - t0
    val = learn.recorder.values[-1] if learn.recorder.values else []
    return {**timed_figures(timer, fit_s), "val_perplexity": float(val[-1]) if val else None}


def main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    import fastai
    import torch
    from fastai.torch_core import set_seed

    torch.set_num_threads(spec["threads"])
    set_seed(spec["seed"])
    command = spec.get("command", "pretrain")
    if command in ("train-clf", "predict"):
        from .e2e_fastai_clf import run_clf, run_predict

        got = (run_clf if command == "train-clf" else run_predict)(torch, spec)
    else:
        got = run_lm(torch, spec)
    print(json.dumps({**got, "fastai": fastai.__version__, "torch": torch.__version__,
                      "fastai_bf16": BF16_NOTE if spec["precision"] == "bf16" else None}))
    sys.stdout.flush()
    return 0
