"""The ceiling: nn.Embedding + nn.LSTM x n_layers + a tied decoder, no dropouts, no AR/TAR,
torch's AdamW; the fused LSTM kernels with nothing around them."""
from __future__ import annotations

from .common import LM_CLIP, OPT, PAD_ID
from .worker import Cycle, autocast


def prepare(spec):
    if spec["task"] != "lm":
        raise ValueError(f"the bare runner has only an lm task, not {spec['task']}")
    return {"optimizer": "torch.AdamW"}, None


def bare_lm(torch, s):
    import torch.nn as nn

    class BareLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(s["vocab"], s["emb"], padding_idx=PAD_ID)
            sizes = [s["emb"]] + [s["hidden"]] * (s["layers"] - 1) + [s["emb"]]
            self.rnns = nn.ModuleList(nn.LSTM(sizes[i], sizes[i + 1], batch_first=True) for i in range(s["layers"]))
            self.dec = nn.Linear(s["emb"], s["vocab"])
            self.dec.weight = self.emb.weight
            self.hidden = None

        def forward(self, x):
            h, new = self.emb(x), []
            for i, rnn in enumerate(self.rnns):
                h, st = rnn(h, None if self.hidden is None else self.hidden[i])
                new.append(tuple(t.detach() for t in st))
            self.hidden = new
            return self.dec(h)

    return BareLM()


def build(spec, dev, data, _prepared):
    import torch
    import torch.nn.functional as F

    model = bare_lm(torch, spec["size"]).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=OPT["lr"], betas=(OPT["beta1"], OPT["beta2"]), eps=OPT["eps"],
                            weight_decay=OPT["weight_decay"])
    batches = Cycle(data)

    def step():
        x, y = batches()
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        with autocast(torch, dev, spec["precision"]):
            logits = model(x)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), LM_CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
        _ = float(loss.detach())
        return x.numel()

    return step, {}, model
