"""fastai's runners (the comparison): its AWD_LSTM models and its Adam in a minimal loop, with
RNNRegularizer's AR/TAR written out, so a step is fastai's arithmetic without Learner's callbacks.
(bench.py --benches e2e times fastai's own Learner loop.)"""
from __future__ import annotations

import sys

from .common import ALPHA, BETA, CLF_CLIP, DROPS, LM_CLIP, N_CLASSES, OPT, PAD_ID
from .worker import Cycle, autocast


def prepare(spec):
    import fastai
    import fastai.optimizer  # noqa: F401
    import fastai.text.models.core  # noqa: F401

    return {"fastai": fastai.__version__}, None


def optimizer(torch, model, split):
    """fastai's default opt_func (Adam with decoupled wd) over its layer-group splitter, as Learner does."""
    try:
        from fastai.optimizer import Adam

        return Adam(split(model), lr=OPT["lr"], mom=OPT["beta1"], sqr_mom=OPT["beta2"], eps=OPT["eps"],
                    wd=OPT["weight_decay"]), "fastai.Adam"
    except Exception as e:  # pragma: no cover - depends on the fastai version
        print(f"fastai Adam unavailable ({e!r}); using torch AdamW", file=sys.stderr)
        return torch.optim.AdamW(model.parameters(), lr=OPT["lr"], betas=(OPT["beta1"], OPT["beta2"]),
                                 eps=OPT["eps"], weight_decay=OPT["weight_decay"]), "torch.AdamW"


def build_lm(torch, spec, dev, data):
    import torch.nn.functional as F
    from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_lm_split
    from fastai.text.models.core import get_language_model

    s = spec["size"]
    config = dict(emb_sz=s["emb"], n_hid=s["hidden"], n_layers=s["layers"], pad_token=PAD_ID, bidir=False,
                  tie_weights=True, out_bias=True, **DROPS)
    model = get_language_model(AWD_LSTM, s["vocab"], config=config, drop_mult=1.0).to(dev).train()
    opt, name = optimizer(torch, model, awd_lstm_lm_split)
    batches = Cycle(data)

    def step():
        x, y = batches()
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        with autocast(torch, dev, spec["precision"]):
            pred, raw_out, out = model(x)  # LinearDecoder -> (decoded, input, dropped input)
            loss = F.cross_entropy(pred.float().reshape(-1, pred.size(-1)), y.reshape(-1))
            # RNNRegularizer.after_loss
            loss = loss + ALPHA * out.float().pow(2).mean()
            if raw_out.size(1) > 1:
                loss = loss + BETA * (raw_out[:, 1:] - raw_out[:, :-1]).float().pow(2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), LM_CLIP)
        opt.step()
        opt.zero_grad()
        _ = float(loss.detach())
        return x.numel()

    return step, {"optimizer": name}, model


def classifier(torch, spec, dev, data):
    """get_text_classifier and two batches of equal-length documents (no padding needed: what
    pad_input_chunk would give)."""
    import numpy as np
    from fastai.text.models.awdlstm import AWD_LSTM
    from fastai.text.models.core import get_text_classifier

    s, bs = spec["size"], spec["bs"]
    config = dict(emb_sz=s["emb"], n_hid=s["hidden"], n_layers=s["layers"], pad_token=PAD_ID, bidir=False, **DROPS)
    model = get_text_classifier(AWD_LSTM, s["vocab"], N_CLASSES, seq_len=s["bptt"], config=config,
                                drop_mult=1.0, pad_idx=PAD_ID, max_len=s["max_len"]).to(dev)
    docs, labels = data
    xs = [torch.as_tensor(np.stack(docs[i:i + bs])).long() for i in (0, bs)]
    ys = [torch.as_tensor(labels[i:i + bs]).long() for i in (0, bs)]
    return model, Cycle(zip(xs, ys))


def build_clf(torch, spec, dev, data):
    import torch.nn.functional as F
    from fastai.text.models.awdlstm import awd_lstm_clas_split

    model, batches = classifier(torch, spec, dev, data)
    model.train()
    opt, name = optimizer(torch, model, awd_lstm_clas_split)

    def step():
        x, y = batches()
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        with autocast(torch, dev, spec["precision"]):
            logits = model(x)[0]
            loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLF_CLIP)
        opt.step()
        opt.zero_grad()
        _ = float(loss.detach())
        return x.size(0)

    return step, {"optimizer": name}, model


def build_predict(torch, spec, dev, data):
    model, batches = classifier(torch, spec, dev, data)
    model.eval()
    x = batches()[0]

    def step():
        with torch.no_grad(), autocast(torch, dev, spec["precision"]):
            logits = model(x.to(dev))[0].float()
        probs = torch.softmax(logits, -1).cpu().numpy()
        assert probs.shape == (spec["bs"], N_CLASSES)
        return spec["bs"]

    return step, {}, model


def build(spec, dev, data, _prepared):
    import torch

    return {"lm": build_lm, "clf": build_clf, "predict": build_predict}[spec["task"]](torch, spec, dev, data)
