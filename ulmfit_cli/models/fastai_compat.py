"""fastai's AWD_LSTM language model <-> ulmfit's `LanguageModel`: state-dict and vocabulary
mapping only (no file I/O; `ulmfit import-fastai` / `export-fastai` read and write the files).

fastai (``get_language_model(AWD_LSTM, ...)``, a ``SequentialRNN(AWD_LSTM, LinearDecoder)``)::

    0.encoder.weight                     embedding (vocab, emb); 0.encoder_dp.emb.weight is the same tensor
    0.rnns.{i}.weight_hh_l0_raw          hidden-to-hidden before DropConnect (fastai 2)
    0.rnns.{i}.module.weight_ih_l0       (older releases: module.weight_hh_l0_raw, or a
    0.rnns.{i}.module.bias_ih_l0, bias_hh_l0                   module.weight_hh_l0 beside it)
    1.decoder.weight, 1.decoder.bias     tied to the embedding by default

ulmfit::

    encoder.encoder.weight, encoder.rnns.{i}.{weight_ih_l0, weight_hh_l0_raw, bias_ih_l0, bias_hh_l0},
    decoder.weight, decoder.bias

The two compute the same function in eval mode: embedding (no scaling), n_layers one-layer LSTMs
(input emb, hidden n_hid, the last layer's hidden = emb), zero initial state, a linear decoder;
dropouts are off in eval mode in both. Only the vocabulary order can differ: ulmfit wants its 9
special tokens first, in its order (fastai 2's order; fastai 1 put xxmaj/xxup before
xxrep/xxwrep), so `vocab_to_ulmfit` permutes rows, which permutes the logits and changes
nothing else.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import torch

from ..data.tokenizers import SPECIAL_TOKENS

FASTAI_EMB = "0.encoder.weight"
FASTAI_EMB_ALIASES = ("0.encoder_dp.emb.weight", "0.encoder_with_dropout.embed.weight")
FASTAI_DEC_W, FASTAI_DEC_B = "1.decoder.weight", "1.decoder.bias"
EMB, DEC_W, DEC_B = "encoder.encoder.weight", "decoder.weight", "decoder.bias"
_re_layer = re.compile(r"^0\.rnns\.(\d+)\.")


class FastaiFormatError(ValueError):
    """The tensors are not an AWD_LSTM language model this converter understands."""


@dataclass
class LMSizes:
    vocab_size: int
    emb_size: int
    hidden_size: int
    n_layers: int
    tie_weights: bool
    out_bias: bool = True

    def model_config(self) -> dict:
        """The size keys of ulmfit's `model` config group."""
        return {"emb_size": self.emb_size, "hidden_size": self.hidden_size,
                "n_layers": self.n_layers, "tie_weights": self.tie_weights}

    def fastai_config(self) -> dict:
        """Arguments for fastai's `get_language_model(AWD_LSTM, vocab_sz, config=...)`."""
        return {"emb_sz": self.emb_size, "n_hid": self.hidden_size, "n_layers": self.n_layers,
                "pad_token": 1, "bidir": False, "tie_weights": self.tie_weights, "out_bias": self.out_bias}


def unwrap_state(obj) -> dict:
    """A state dict, or fastai's `learn.save` file ({'model': state dict, 'opt': ...})."""
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj:
        raise FastaiFormatError("it is not a state dict (a mapping of parameter names to tensors)")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise FastaiFormatError(f"entry {bad[0]!r} is not a named tensor, so this is not a state dict")
    return dict(obj)


def _take(state: dict, used: set, *names: str) -> Optional[torch.Tensor]:
    for n in names:
        if n in state:
            used.add(n)
            return state[n]
    return None


def _shape(t: torch.Tensor, *shape: int, what: str) -> None:
    if tuple(t.shape) != shape:
        raise FastaiFormatError(f"{what} has shape {tuple(t.shape)}, expected {shape}")


def _fastai_embedding(state: dict, used: set, notes: list[str]) -> torch.Tensor:
    emb = _take(state, used, FASTAI_EMB, *FASTAI_EMB_ALIASES)
    if emb is None:
        raise FastaiFormatError(f"it has no {FASTAI_EMB} (the embedding of an AWD_LSTM language model)")
    if emb.dim() != 2:
        raise FastaiFormatError(f"{FASTAI_EMB} has shape {tuple(emb.shape)}, expected (vocab, emb)")
    for alias in FASTAI_EMB_ALIASES:
        if alias in state:
            used.add(alias)
            if state[alias].shape != emb.shape or not torch.equal(state[alias], emb):
                notes.append(f"{alias} differs from {FASTAI_EMB}; the latter was used")
    return emb


def _fastai_lstm_layer(state: dict, used: set, i: int, n_in: int) -> dict[str, torch.Tensor]:
    """Layer i's four tensors under ulmfit's names; absent biases are zeros (fastai's are optional)."""
    p = f"0.rnns.{i}."
    w_ih = _take(state, used, p + "module.weight_ih_l0", p + "weight_ih_l0")
    w_hh = _take(state, used, p + "weight_hh_l0_raw", p + "module.weight_hh_l0_raw", p + "module.weight_hh_l0")
    b_ih = _take(state, used, p + "module.bias_ih_l0", p + "bias_ih_l0")
    b_hh = _take(state, used, p + "module.bias_hh_l0", p + "bias_hh_l0")
    if p + "module.weight_hh_l0" in state:  # the last dropped copy (older fastai): the raw one is the weight
        used.add(p + "module.weight_hh_l0")
    if w_ih is None or w_hh is None:
        raise FastaiFormatError(f"layer {i} lacks {p}module.weight_ih_l0 or {p}weight_hh_l0_raw")
    if w_ih.dim() != 2 or w_ih.size(0) % 4:
        raise FastaiFormatError(f"{p}module.weight_ih_l0 has shape {tuple(w_ih.shape)}, expected (4*hidden, in)")
    h = w_ih.size(0) // 4
    _shape(w_ih, 4 * h, n_in, what=f"{p}module.weight_ih_l0")
    _shape(w_hh, 4 * h, h, what=f"{p}weight_hh_l0_raw")
    b_ih = w_ih.new_zeros(4 * h) if b_ih is None else b_ih
    b_hh = w_ih.new_zeros(4 * h) if b_hh is None else b_hh
    _shape(b_ih, 4 * h, what=f"{p}module.bias_ih_l0")
    _shape(b_hh, 4 * h, what=f"{p}module.bias_hh_l0")
    q = f"encoder.rnns.{i}."
    return {q + "weight_ih_l0": w_ih, q + "weight_hh_l0_raw": w_hh, q + "bias_ih_l0": b_ih, q + "bias_hh_l0": b_hh}


def _fastai_lstm(state: dict, used: set, emb_size: int) -> tuple[dict[str, torch.Tensor], int, int]:
    """All LSTM layers -> (their tensors, hidden_size, n_layers), checked to be an AWD_LSTM's."""
    layers = sorted({int(m.group(1)) for k in state if (m := _re_layer.match(k))})
    if not layers or layers != list(range(len(layers))):
        raise FastaiFormatError("its LSTM layers 0.rnns.0, 0.rnns.1, ... are missing or not numbered 0..n-1")
    out: dict = {}
    hidden_sizes, n_in = [], emb_size
    for i in layers:
        tensors = _fastai_lstm_layer(state, used, i, n_in)
        out.update(tensors)
        n_in = tensors[f"encoder.rnns.{i}.weight_hh_l0_raw"].size(1)
        hidden_sizes.append(n_in)
    if hidden_sizes[-1] != emb_size:
        raise FastaiFormatError(f"its last LSTM layer has {hidden_sizes[-1]} units but the embedding has "
                                f"{emb_size}; an AWD_LSTM's last layer matches the embedding size")
    if len(set(hidden_sizes[:-1])) > 1:
        raise FastaiFormatError(f"its inner LSTM layers differ in size ({hidden_sizes[:-1]}); "
                                "an AWD_LSTM has one n_hid")
    return out, (hidden_sizes[0] if len(layers) > 1 else emb_size), len(layers)


def _fastai_decoder(state: dict, used: set, vocab: int, emb_size: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    dec_w = _take(state, used, FASTAI_DEC_W)
    dec_b = _take(state, used, FASTAI_DEC_B)
    if dec_w is None:
        raise FastaiFormatError(f"it has no {FASTAI_DEC_W}: an encoder alone (learn.save_encoder) is not a "
                                "language model; save the whole LM (learn.save) instead")
    _shape(dec_w, vocab, emb_size, what=FASTAI_DEC_W)
    if dec_b is not None:
        _shape(dec_b, vocab, what=FASTAI_DEC_B)
    return dec_w, dec_b


def from_fastai_lm(fastai_state: Mapping[str, torch.Tensor]) -> tuple[dict, LMSizes, list[str]]:
    """fastai LM state dict -> (ulmfit LanguageModel state dict, sizes, notes).

    The embedding and the decoder weight are one tensor when fastai's are equal (tied)."""
    state = unwrap_state(fastai_state)
    used: set = set()
    notes: list[str] = []
    reverse = [k for k in state if k.endswith("_reverse")]
    if reverse:
        raise FastaiFormatError(f"it is a bidirectional AWD_LSTM ({reverse[0]}); ulmfit's LSTM layers are "
                                "one-directional (its backward model is a separate LM, --backward)")
    emb = _fastai_embedding(state, used, notes)
    vocab, emb_size = emb.shape
    lstm, hidden_size, n_layers = _fastai_lstm(state, used, emb_size)
    dec_w, dec_b = _fastai_decoder(state, used, vocab, emb_size)
    leftover = sorted(set(state) - used)
    if leftover:
        raise FastaiFormatError(f"it has tensors an AWD_LSTM language model does not ({', '.join(leftover[:5])}"
                                f"{', ...' if len(leftover) > 5 else ''})")
    tied = bool(torch.equal(dec_w, emb))
    emb = emb.detach().float().clone()
    out = {k: v.detach().float().clone() for k, v in lstm.items()}
    out[EMB] = emb
    out[DEC_W] = emb if tied else dec_w.detach().float().clone()
    out[DEC_B] = emb.new_zeros(vocab) if dec_b is None else dec_b.detach().float().clone()
    sizes = LMSizes(vocab, emb_size, hidden_size, n_layers, tied, out_bias=dec_b is not None)
    return _ordered(out, n_layers), sizes, notes


def _ordered(state: dict, n_layers: int) -> dict:
    keys = [EMB] + [f"encoder.rnns.{i}.{n}" for i in range(n_layers)
                    for n in ("weight_ih_l0", "weight_hh_l0_raw", "bias_ih_l0", "bias_hh_l0")] + [DEC_W, DEC_B]
    return OrderedDict((k, state[k]) for k in keys)


def to_fastai_lm(ulmfit_state: Mapping[str, torch.Tensor]) -> tuple[OrderedDict, LMSizes]:
    """ulmfit LanguageModel state dict -> the state dict of fastai 2's
    `get_language_model(AWD_LSTM, vocab, config=sizes.fastai_config())` (loads with strict=True)."""
    state = dict(ulmfit_state)
    missing = [k for k in (EMB, DEC_W, DEC_B) if k not in state]
    if missing:
        raise FastaiFormatError(f"it has no {', '.join(missing)}: not an ulmfit language model")
    emb = state[EMB].detach().cpu()
    vocab, emb_size = emb.shape
    n_layers = len({int(k.split(".")[2]) for k in state if k.startswith("encoder.rnns.")})
    tied = state[DEC_W] is state[EMB] or bool(torch.equal(state[DEC_W].cpu(), emb))
    out: OrderedDict = OrderedDict()
    out[FASTAI_EMB] = emb
    out[FASTAI_EMB_ALIASES[0]] = emb
    for i in range(n_layers):
        q, p = f"encoder.rnns.{i}.", f"0.rnns.{i}."
        out[p + "weight_hh_l0_raw"] = state[q + "weight_hh_l0_raw"].detach().cpu()
        out[p + "module.weight_ih_l0"] = state[q + "weight_ih_l0"].detach().cpu()
        out[p + "module.bias_ih_l0"] = state[q + "bias_ih_l0"].detach().cpu()
        out[p + "module.bias_hh_l0"] = state[q + "bias_hh_l0"].detach().cpu()
    out[FASTAI_DEC_W] = emb if tied else state[DEC_W].detach().cpu()
    out[FASTAI_DEC_B] = state[DEC_B].detach().cpu()
    hidden = state["encoder.rnns.0.weight_hh_l0_raw"].size(1) if n_layers > 1 else emb_size
    return out, LMSizes(vocab, emb_size, hidden, n_layers, tied)


# --------------------------------------------------------------------------- vocabulary
@dataclass
class VocabPlan:
    """ulmfit's itos for a fastai one, and where each of its rows comes from."""

    itos: list[str]
    rows: list[Optional[int]]  # rows[j]: fastai row of itos[j]; None: new (mean) row
    added: list[str] = field(default_factory=list)  # special tokens fastai's vocabulary lacked
    renamed: list[tuple[str, str]] = field(default_factory=list)  # duplicates (e.g. fastai's 'xxfake' padding)

    @property
    def is_identity(self) -> bool:
        return not self.added and self.rows == list(range(len(self.rows)))


def vocab_to_ulmfit(itos: Sequence[str]) -> VocabPlan:
    """ulmfit wants its 9 special tokens first, in its order, and no duplicate tokens.

    Specials move to the front (a missing one gets a new row); other tokens keep their order.
    fastai maps a duplicated token to its last occurrence, so that one keeps the name and the
    earlier copies are renamed '<tok> (duplicate k)' (no text ever tokenizes to a name with a
    space), which keeps every row and so the model's function."""
    itos = list(itos)
    names = list(itos)
    last = {t: i for i, t in enumerate(itos)}
    taken = set(itos)
    renamed = []
    for i, t in enumerate(itos):
        if last[t] != i:
            k = 1
            while f"{t} (duplicate {k})" in taken:
                k += 1
            names[i] = f"{t} (duplicate {k})"
            taken.add(names[i])
            renamed.append((t, names[i]))
    pos = {t: i for i, t in enumerate(names)}
    specials = set(SPECIAL_TOKENS)
    rows: list[Optional[int]] = [pos.get(t) for t in SPECIAL_TOKENS]
    added = [t for t in SPECIAL_TOKENS if t not in pos]
    rest = [i for i, t in enumerate(names) if t not in specials]
    return VocabPlan(SPECIAL_TOKENS + [names[i] for i in rest], rows + rest, added, renamed)


def reorder_rows(ulmfit_state: Mapping[str, torch.Tensor], rows: Sequence[Optional[int]]) -> dict:
    """The embedding, an untied decoder weight and the decoder bias, re-indexed by `rows`
    (None: the mean of the old rows, as fastai's match_embeds does for new tokens)."""
    state = dict(ulmfit_state)
    tied = state[DEC_W] is state[EMB]

    def take(t: torch.Tensor) -> torch.Tensor:
        idx = torch.tensor([r if r is not None else 0 for r in rows], dtype=torch.long)
        new = t.index_select(0, idx)
        fill = [j for j, r in enumerate(rows) if r is None]
        if fill:
            new[torch.tensor(fill)] = t.float().mean(0).to(t.dtype)
        return new

    state[EMB] = take(state[EMB])
    state[DEC_W] = state[EMB] if tied else take(state[DEC_W])
    state[DEC_B] = take(state[DEC_B])
    return state


def check_itos(obj) -> list[str]:
    """A fastai vocabulary is a list of str (itos); anything else is refused."""
    if not isinstance(obj, list) or not obj:
        raise FastaiFormatError(f"it holds a {type(obj).__name__}, not a non-empty list of tokens")
    bad = next((i for i, t in enumerate(obj) if not isinstance(t, str)), None)
    if bad is not None:
        raise FastaiFormatError(f"item {bad} is a {type(obj[bad]).__name__}, not a str")
    return obj
