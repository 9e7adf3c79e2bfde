"""`ulmfit export-fastai run=<pretrain or finetune-lm run dir> [--out DIR]`.

Writes each direction's language model in fastai's layout, for fastai users:

    lstm_fwd.pth, itos_fwd.pkl   (lstm_bwd.pth, itos_bwd.pkl)   fastai 2 AWD_LSTM LM state dict + vocabulary
    fastai_config.json            the `config` to build that model with, per direction
    README.txt                    how to load them in fastai

The state dict loads with strict=True into fastai's `get_language_model(AWD_LSTM, len(itos),
config=...)`; `language_model_learner(..., pretrained_fnames=['lstm_fwd', 'itos_fwd'])` maps it
onto a new vocabulary as fastai does for its own WT103 model.
"""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..errors import UserError
from ..models.fastai_compat import FastaiFormatError, to_fastai_lm
from ..stages.model_io import checkpoints_of, load_model
from ..stages.sources import load_lm_checkpoint
from ..fileutil import dir_built_aside
from .args import flags_to_dotlist, parse

USAGE = ("usage: ulmfit export-fastai run=<pretrain or finetune-lm run dir> [--out DIR] [direction=all|fwd|bwd]\n"
         "  (default --out: <run dir>/fastai-export)")

README = """Exported by `ulmfit export-fastai` from {run}.

Each direction is a fastai 2 AWD_LSTM language model (SequentialRNN(AWD_LSTM, LinearDecoder)):
lstm_<dir>.pth is its state dict, itos_<dir>.pkl its vocabulary (a list of str), and
fastai_config.json the config it was built with. In fastai:

    import json, torch
    from fastai.text.all import *
    cfg = {{**awd_lstm_lm_config, **json.load(open('fastai_config.json'))['fwd']}}
    itos = load_pickle('itos_fwd.pkl')
    model = get_language_model(AWD_LSTM, len(itos), config=cfg)
    model.load_state_dict(torch.load('lstm_fwd.pth'))          # strict: every key matches

or, to fine-tune on your own data with fastai (its vocabulary is matched by token, as for
fastai's WT103 model), copy both files into learn.path/models and pass

    language_model_learner(dls, AWD_LSTM, config=cfg, pretrained_fnames=['lstm_fwd', 'itos_fwd'])

The vocabulary starts with fastai 2's special tokens in fastai 2's order ({specials}).
Tokenizer: {tokenizer}.
"""


@dataclass
class ExportArgs:
    run: str = "???"
    out: Optional[str] = None
    direction: str = "all"
    verbose: bool = False


def main(argv: list[str]) -> int:
    a = parse(ExportArgs, flags_to_dotlist(argv, USAGE), USAGE)
    run = Path(a.run)
    if a.direction not in ("all", "fwd", "bwd"):
        raise UserError(f"direction={a.direction} is not one of all, fwd, bwd.", USAGE)
    found = checkpoints_of(run, ["fwd", "bwd"] if a.direction == "all" else [a.direction], "lm")
    ckpts = {d: load_lm_checkpoint(run, d, "run") for d in found}
    out = Path(a.out) if a.out else run / "fastai-export"
    exported, configs = {}, {}
    for d, ckpt in ckpts.items():
        try:
            state, sizes = to_fastai_lm(load_model(ckpt, expect="lm").state_dict())
        except FastaiFormatError as e:
            raise UserError(f"run={run}: checkpoints/{d}.pt cannot be exported: {e}.",
                            "Re-create it with `ulmfit pretrain` or `ulmfit finetune-lm`.") from None
        itos = list(ckpt["numericalizer"]["itos"])
        exported[d] = (state, itos, ckpt["numericalizer"])
        configs[d] = sizes.fastai_config()

    # plain writes inside: the folder appears under its name only once complete
    with dir_built_aside(out) as tmp:
        for d, (state, itos, numer) in exported.items():
            torch.save(state, tmp / f"lstm_{d}.pth")
            (tmp / f"itos_{d}.pkl").write_bytes(pickle.dumps(itos, protocol=4))
            if numer.get("kind") == "spm" and numer.get("model_proto"):
                (tmp / f"spm_{d}.model").write_bytes(numer["model_proto"])
        (tmp / "fastai_config.json").write_text(json.dumps(configs, indent=2) + "\n")
        first = next(iter(exported.values()))
        tokenizer = ("ulmfit's word tokenizer (fastai's rules: xxbos, xxmaj, xxup, xxrep, xxwrep; a regex "
                     "word splitter close to spaCy's)" if first[2].get("kind") == "word" else
                     "SentencePiece; spm_<dir>.model is its model (fastai's SentencePieceTokenizer(sp_model=...))")
        (tmp / "README.txt").write_text(README.format(run=run.resolve(), specials=", ".join(first[1][:9]),
                                                      tokenizer=tokenizer))
    for d, (state, itos, _) in exported.items():
        c = configs[d]
        print(f"{d}: {out / f'lstm_{d}.pth'} + {out / f'itos_{d}.pkl'} (vocab {len(itos)}, emb {c['emb_sz']}, "
              f"hidden {c['n_hid']}, {c['n_layers']} layers)")
    print(f"load in fastai: see {out / 'README.txt'}")
    return 0
