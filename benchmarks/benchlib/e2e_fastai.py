"""fastai's side of the end-to-end bench, run in fastai's interpreter: its own Learner loop
(`language_model_learner(..., pretrained=False)`, `learn.fit(1)`) over the ids the ulmfit run
trains on, cut after N batches, with a Callback timing the batches.

Imports only the stdlib at module level.
"""
from __future__ import annotations

import json
import sys
import time

from .common import ALPHA, BETA, DROPS, LM_CLIP, OPT, PAD_ID


BF16_NOTE = ("learn.to_bf16()'s MixedPrecision(AMPMode.BF16), with autocast on the run's device (fastai "
             "2.8.12's own autocasts only 'cuda')")


def timer_callback(steps: int):
    """A Callback that times what ulmfit's Trainer times: the intervals between step ends (from
    the start of the training loop), and the loop's wall time; it stops training after `steps`
    batches (validation then runs, as ulmfit evaluates at the end of its epoch)."""
    from fastai.callback.core import Callback, CancelTrainException

    class Timer(Callback):
        order = 100  # after Recorder and every other after_batch: the step is complete

        def before_fit(self):
            self.t_fit, self.units, self.seconds, self.n = time.perf_counter(), 0, 0.0, 0

        def before_train(self):
            self.t_last = time.perf_counter()

        def after_batch(self):
            if not self.training:
                return
            now = time.perf_counter()
            self.units += self.xb[0].numel()
            self.seconds += now - self.t_last
            self.t_last, self.n = now, self.n + 1
            if self.n >= steps:
                raise CancelTrainException()

        def after_train(self):
            self.t_train_end = time.perf_counter()

        def after_validate(self):
            self.t_valid_end = time.perf_counter()

    return Timer()


def dataloaders(torch, spec):
    """LMDataLoaders over the saved ids (documents as fastai's LMDataLoader takes them)."""
    import numpy as np
    from fastai.data.core import DataLoaders
    from fastai.text.data import LMDataLoader

    z = np.load(spec["tokens"])
    s = spec["size"]

    def docs(split):
        ids, lens = torch.from_numpy(z[f"{split}_ids"]), z[f"{split}_lens"].tolist()
        return list(torch.split(ids, lens))

    train = LMDataLoader(docs("train"), bs=s["bs"], seq_len=s["bptt"], shuffle=True, drop_last=True)
    valid = LMDataLoader(docs("valid"), bs=s["bs"], seq_len=s["bptt"], shuffle=False)
    dls = DataLoaders(train, valid, device=torch.device(spec["device"]))
    dls.vocab = [f"w{i}" for i in range(spec["vocab"])]  # the learner reads only its length
    return dls


def learner(torch, spec, timer):
    from functools import partial

    from fastai.callback.progress import ProgressCallback
    from fastai.callback.training import GradientClip
    from fastai.metrics import Perplexity, accuracy
    from fastai.optimizer import Adam
    from fastai.text.learner import language_model_learner
    from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_lm_config

    s = spec["size"]
    config = {**awd_lstm_lm_config, "emb_sz": s["emb"], "n_hid": s["hidden"], "n_layers": s["layers"],
              "pad_token": PAD_ID, **DROPS}
    opt = partial(Adam, mom=OPT["beta1"], sqr_mom=OPT["beta2"], eps=OPT["eps"])
    learn = language_model_learner(dataloaders(torch, spec), AWD_LSTM, config=config, pretrained=False,
                                   drop_mult=1.0, opt_func=opt, wd=OPT["weight_decay"], alpha=ALPHA, beta=BETA,
                                   metrics=[accuracy, Perplexity()], cbs=[GradientClip(LM_CLIP), timer])
    learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, ProgressCallback)])  # as ulmfit's progress=none
    if spec["precision"] == "bf16":
        learn.add_cb(bf16_callback(torch, torch.device(spec["device"])))
    return learn


def bf16_callback(torch, dev):
    """`learn.to_bf16()`'s MixedPrecision, autocasting on `dev`: fastai 2.8.12 enters
    autocast('cuda') whatever the device, so on a CPU its bf16 would silently train in fp32."""
    from fastai.callback.fp16 import AMPMode, MixedPrecision

    class DeviceMixedPrecision(MixedPrecision):
        def before_fit(self):
            super().before_fit()
            self.autocast = torch.autocast(device_type=dev.type, dtype=torch.bfloat16)

    return DeviceMixedPrecision(amp_mode=AMPMode.BF16)


def main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    import fastai
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    timer = timer_callback(spec["steps"])
    learn = learner(torch, spec, timer)
    t0 = time.perf_counter()
    learn.fit(1, lr=OPT["lr"])
    fit_s = time.perf_counter() - t0
    val = learn.recorder.values[-1] if learn.recorder.values else []
    print(json.dumps({"throughput": timer.units / timer.seconds, "loop_s": timer.t_train_end - timer.t_fit,
                      "eval_s": timer.t_valid_end - timer.t_train_end, "fit_s": fit_s, "trained_tokens": timer.units,
                      "val_perplexity": float(val[-1]) if val else None, "fastai": fastai.__version__,
                      "fastai_bf16": BF16_NOTE if spec["precision"] == "bf16" else None}))
    sys.stdout.flush()
    return 0
