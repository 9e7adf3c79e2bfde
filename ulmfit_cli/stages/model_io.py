"""Models to and from checkpoint payloads: the one place that writes a model's payload and the
one place that rebuilds a model from one.

A payload is plain data (torch.load(weights_only=True) reads it): the weights, the model config
with the sizes the weights fix, and the numericalizer, so a checkpoint alone rebuilds its model.
- `lm_payload` / `clf_payload`: what pretrain/finetune-lm/import and train-clf save per direction.
- `load_model(ckpt)`: the model exactly as saved, for predict, evaluate, generate and export.
- `lm_from(...)` / `classifier_from(...)`: a new model for the next stage, its sizes and weights
  taken from the previous stage's LM (finetune-lm maps them onto its vocabulary; train-clf takes
  the encoder and starts a fresh head).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ..config import ModelConfig
from ..data.tokenizers import PAD_ID
from ..errors import UserError
from ..models import build_classifier, build_lm
from ..models.heads import LanguageModel, TextClassifier
from ..models.vocab_mapping import map_bias, map_embeddings

log = logging.getLogger("ulmfit")

# What a pretrained source fixes about the model, whatever the new run's `model` config says.
MODEL_SIZE_KEYS = ("emb_size", "hidden_size", "n_layers", "tie_weights")


def _payload(kind: str, model, numericalizer, model_config: dict, direction: str, result: dict) -> dict:
    return {"kind": kind, "direction": direction, "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "model_config": model_config, "numericalizer": numericalizer.state(),
            "vocab_identity": numericalizer.identity(), "result": result}


def lm_payload(model: LanguageModel, numericalizer, model_cfg, direction: str, result: dict) -> dict:
    enc = model.encoder
    sizes = {"emb_size": enc.emb_size, "hidden_size": enc.hidden_size, "n_layers": enc.n_layers,
             "tie_weights": model.decoder.weight is enc.encoder.weight}
    return _payload("lm", model, numericalizer, {**OmegaConf.to_container(model_cfg, resolve=True), **sizes},
                    direction, result)


def clf_payload(model: TextClassifier, numericalizer, model_cfg, direction: str, *, classes: list[str],
                multi_label: bool, threshold: float | None, result: dict, probs: dict) -> dict:
    """`probs`: the direction's validation and test probabilities, so that a resumed
    bidirectional run can ensemble a direction it does not train again."""
    return {**_payload("clf", model, numericalizer, OmegaConf.to_container(model_cfg, resolve=True), direction, result),
            "classes": classes, "multi_label": multi_label, "threshold": threshold, "pad_id": numericalizer.pad_id,
            "probs": {split: torch.as_tensor(p) for split, p in probs.items()}}


def sized_like(model_cfg, source: dict | None) -> DictConfig:
    """`model_cfg` with the sizes of the source checkpoint's model, whose weights fix them."""
    if source is None:
        return model_cfg
    return OmegaConf.merge(model_cfg, {k: source["model_config"][k] for k in MODEL_SIZE_KEYS})


KIND_NAMES = {"lm": ("language model", "pretrain or finetune-lm"), "clf": ("classifier", "train-clf")}


def checkpoints_of(run: Path, names: list[str], kind: str) -> list[str]:
    """The directions among `names` whose final `kind` ("lm" or "clf") checkpoint the run dir holds;
    a clear error when it holds none."""
    what, where = KIND_NAMES[kind]
    if not run.is_dir():
        raise UserError(f"run={run}: no such run directory.", f"Pass a {where} run directory (outputs/<stage>/<time>).")
    found = [n for n in names if (run / "checkpoints" / f"{n}.pt").exists()]
    if not found:
        raise UserError(f"run={run} has no {what.replace(' ', '-')} checkpoint "
                        f"({', '.join(f'checkpoints/{n}.pt' for n in names)}).",
                        f"Point run= at a finished {where} run directory.")
    return found


def load_model(ckpt: dict, device: torch.device | str = "cpu", expect: str | None = None) -> LanguageModel | TextClassifier:
    """The model of an LM or classifier checkpoint, exactly as saved, in eval mode on `device`.
    `expect` ("lm" or "clf"): refuse a checkpoint of the other kind with a clear error."""
    kind = ckpt.get("kind")
    if kind not in KIND_NAMES or (expect and kind != expect):
        what, where = KIND_NAMES[expect] if expect else ("language model or classifier", "training")
        raise UserError(f"That run holds a {ckpt.get('stage', '?')} checkpoint ({kind}), not a {what}.",
                        f"Point run= at a {where} run directory.")
    # over the schema's defaults: a checkpoint written before a model key existed still loads
    model_cfg = OmegaConf.merge(OmegaConf.to_container(OmegaConf.structured(ModelConfig)), ckpt["model_config"])
    vocab = len(ckpt["numericalizer"]["itos"])
    if kind == "lm":
        model = build_lm(model_cfg, vocab, PAD_ID)
    else:
        train = ckpt["config"]["train"]
        model = build_classifier(model_cfg, vocab, ckpt["pad_id"], len(ckpt["classes"]), train["bptt"], train["max_len"])
    state = ckpt["model"]
    # the checkpoint's tensors become the weights (no second copy of them held beside the model)
    # where their dtypes agree; the model is for evaluation, nothing trains them in place
    model.load_state_dict(state, assign=_same_dtypes(model.state_dict(), state))
    return model.to(device).eval()


def _same_dtypes(own: dict, state: dict) -> bool:
    return all(k in state and getattr(state[k], "dtype", None) == v.dtype for k, v in own.items())


def lm_from(model_cfg, numericalizer, source: dict | None = None) -> LanguageModel:
    """A new LM for this vocabulary; with `source` (an LM checkpoint), its sizes and weights, the
    rows of its vocabulary mapped onto this one (new tokens start at the mean embedding)."""
    model = build_lm(sized_like(model_cfg, source), len(numericalizer.itos), numericalizer.pad_id)
    if source is None:
        return model
    state = dict(source["model"])
    old_itos, new_itos = source["numericalizer"]["itos"], list(numericalizer.itos)
    if old_itos != new_itos:
        emb, found = map_embeddings(state["encoder.encoder.weight"], old_itos, new_itos)
        state["encoder.encoder.weight"] = emb
        if "decoder.weight" in state:
            state["decoder.weight"] = emb
        state["decoder.bias"], _ = map_bias(state["decoder.bias"], old_itos, new_itos)
        log.info("vocabulary mapped onto the pretrained one: %d of %d tokens known, the rest start at the mean embedding",
                 found, len(new_itos))
    model.load_state_dict(state)
    return model


def classifier_from(model_cfg, numericalizer, n_classes: int, bptt: int, max_len: int,
                    source: dict | None = None) -> TextClassifier:
    """A new classifier; with `source` (an LM checkpoint of the same vocabulary), its encoder's
    sizes and weights. The decoder is dropped and the head starts fresh."""
    model = build_classifier(sized_like(model_cfg, source), len(numericalizer.itos), numericalizer.pad_id,
                             n_classes, bptt, max_len)
    if source is None:
        return model
    enc = {k: v for k, v in source["model"].items() if k.startswith("encoder.")}
    missing, unexpected = model.load_state_dict(enc, strict=False)
    bad = [k for k in missing if k.startswith("encoder.")] + unexpected
    if bad:
        raise UserError(f"The language model's weights do not fit this classifier (keys: {bad[:4]}).",
                        "Use an LM run made by this version of ulmfit.")
    return model
