"""fastai's classifier side of the end-to-end bench (benchlib/e2e.py), in fastai's interpreter:

  train-clf  `text_classifier_learner(..., pretrained=False)` with the encoder of the finetune-lm
             run (its `ulmfit export-fastai` weights, loaded as `load_encoder` does, then frozen),
             `freeze_to(-k)` + `fit_one_cycle(1)` for each k of ulmfit's unfreeze.steps, then
             `unfreeze()` + `fit_one_cycle(1)`, each cut after N batches; validation after each
             phase, `get_preds` on the test reviews at the end; the model saved for predict
  predict    that classifier, `learn.get_preds` on the reviews' ids

The reviews come as ulmfit reads them (ids, lengths and labels in the .npz), batched by fastai's
SortedDL with Pad_Chunk (BPT3C's padding to a multiple of bptt), bs and bptt as ulmfit's. The
Learner is what a fastai user gets: TextLearner's AR/TAR (alpha 2, beta 1) on the classifier's
encoder output too (ulmfit's classifier has none), its one-cycle schedule per phase.

Imports only the stdlib at module level.
"""
from __future__ import annotations

import time
from pathlib import Path

from .common import CLF_CLIP, DROPS, N_CLASSES, OPT, PAD_ID
from .e2e_fastai import DECAY, adam, finish_learner, timed_figures, timer_callback


def reviews(torch, z, split: str, labelled: bool = True) -> tuple[list, list[int]]:
    """(fastai items, lengths) of one split: (TensorText, TensorCategory) pairs, or 1-tuples."""
    import numpy as np
    from fastai.text.data import TensorText
    from fastai.torch_core import TensorCategory

    lens = z[f"{split}_lens"].tolist()
    texts = [TensorText(t) for t in torch.split(torch.from_numpy(z[f"{split}_ids"].astype(np.int64)), lens)]
    if not labelled:
        return [(t,) for t in texts], lens
    return [(t, TensorCategory(int(y))) for t, y in zip(texts, z[f"{split}_labels"].tolist())], lens


def sorted_dl(torch, spec, split: tuple, shuffle: bool):
    """fastai's text classification loader: SortedDL (sortish when shuffled), Pad_Chunk."""
    from fastai.text.data import Pad_Chunk, SortedDL

    s = spec["size"]
    items, lens = split
    return SortedDL(items, res=lens, bs=s["bs"], shuffle=shuffle, drop_last=shuffle,
                    device=torch.device(spec["device"]), before_batch=Pad_Chunk(pad_idx=PAD_ID, seq_len=s["bptt"]))


def clf_learner(torch, spec, dls, timer):
    from fastai.callback.training import GradientClip
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    from fastai.text.learner import text_classifier_learner
    from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_clas_config

    s = spec["size"]
    dls.vocab = [f"w{i}" for i in range(spec["vocab"])]  # the learner reads only its length
    config = {**awd_lstm_clas_config, "emb_sz": s["emb"], "n_hid": s["hidden"], "n_layers": s["layers"],
              "pad_token": PAD_ID, **DROPS}
    learn = text_classifier_learner(dls, AWD_LSTM, seq_len=s["bptt"], config=config, pretrained=False, drop_mult=1.0,
                                    n_out=N_CLASSES, max_len=s["max_len"], loss_func=CrossEntropyLossFlat(),
                                    opt_func=adam(), wd=OPT["weight_decay"], metrics=accuracy,
                                    cbs=[GradientClip(CLF_CLIP), timer])
    return finish_learner(torch, learn, spec)


def load_encoder(torch, learn, export: Path) -> None:
    """The fine-tuned LM's encoder (the `0.` keys of the exported fastai LM), as
    `learn.load_encoder` loads a `save_encoder` file: strictly, then freeze()."""
    from fastai.text.learner import clean_raw_keys

    state = torch.load(export / "lstm_fwd.pth", map_location="cpu", weights_only=True)
    learn.model[0].module.load_state_dict(clean_raw_keys({k[2:]: v for k, v in state.items() if k.startswith("0.")}))
    learn.freeze()


def run_clf(torch, spec) -> dict:
    import numpy as np
    from fastai.data.core import DataLoaders

    z = np.load(spec["ids"])
    dls = DataLoaders(sorted_dl(torch, spec, reviews(torch, z, "train"), True),
                      sorted_dl(torch, spec, reviews(torch, z, "valid"), False), device=torch.device(spec["device"]))
    timer = timer_callback(spec["steps"], per_row=True)
    learn = clf_learner(torch, spec, dls, timer)
    load_encoder(torch, learn, Path(spec["export"]))
    lrs = slice(OPT["lr"] / DECAY ** 4, OPT["lr"])
    t0 = time.perf_counter()
    for k in spec["unfreeze"]:
        learn.freeze_to(-k)
        learn.fit_one_cycle(1, lrs)
    learn.unfreeze()
    learn.fit_one_cycle(1, lrs)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    probs, targets = learn.get_preds(dl=sorted_dl(torch, spec, reviews(torch, z, "test"), False))
    test_s = time.perf_counter() - t0
    torch.save(learn.model.state_dict(), Path(spec["run_dir"]) / "fastai_clf.pth")
    got = timed_figures(timer, fit_s)
    return {**got, "eval_s": got["eval_s"] + test_s, "docs_seen": got["units_seen"], "test_s": test_s,
            "phases": len(spec["unfreeze"]) + 1, "test_accuracy": float((probs.argmax(1) == targets).float().mean())}


def run_predict(torch, spec) -> dict:
    import numpy as np
    from fastai.data.core import DataLoaders

    if not spec.get("model"):
        raise SystemExit("no fastai classifier to predict with: fastai's train-clf run failed or did not run")
    test = sorted_dl(torch, spec, reviews(torch, np.load(spec["ids"]), "test", labelled=False), False)
    timer = timer_callback(0, per_row=True)
    learn = clf_learner(torch, spec, DataLoaders(test, test, device=torch.device(spec["device"])), timer)
    learn.model.load_state_dict(torch.load(spec["model"], map_location="cpu", weights_only=True))
    t0 = time.perf_counter()
    probs = learn.get_preds(dl=test)[0]
    loop_s = time.perf_counter() - t0
    n = len(probs)
    return {"throughput": n / loop_s, "loop_s": loop_s, "eval_s": None, "units_seen": n, "docs_seen": n,
            "tokens_seen": timer.eval_tokens, "rows_batched": timer.eval_units}
