"""Classifier pieces shared by train-clf, evaluate and predict."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from ..data.batching import ClassifierBatches
from ..errors import UserError
from ..models import build_classifier
from ..models.heads import TextClassifier
from ..training.loop import StepOut, autocast_for
from .lm import MODEL_SIZE_KEYS


def clf_step(device: torch.device, multi_label: bool):
    def step(model: TextClassifier, batch) -> StepOut:
        x, y = batch.x.to(device, non_blocking=True), batch.y.to(device, non_blocking=True)
        logits = model(x).float()
        if multi_label:
            loss = F.binary_cross_entropy_with_logits(logits, y.float())
        else:
            loss = F.cross_entropy(logits, y)
        return StepOut(loss, x.size(0))

    return step


@torch.no_grad()
def predict_proba(model: TextClassifier, docs: list[np.ndarray], *, bs: int, pad_id: int, reverse: bool,
                  device: torch.device, precision: str = "fp32", multi_label: bool = False) -> np.ndarray:
    """Class probabilities in the order of `docs`, whatever order the length-sorted batches take."""
    model.eval()
    out = None
    batches = ClassifierBatches(docs, None, bs, pad_id, model.bptt, shuffle=False, reverse=reverse)
    for batch in batches.epoch():
        with autocast_for(device, precision):
            logits = model(batch.x.to(device)).float()
        probs = torch.sigmoid(logits) if multi_label else torch.softmax(logits, -1)
        if out is None:
            out = np.zeros((len(docs), probs.size(1)), dtype=np.float32)
        out[batch.idx] = probs.cpu().numpy()
    return out


def scores(probs: np.ndarray, labels: np.ndarray, multi_label: bool = False, threshold: float = 0.5) -> dict:
    """loss, accuracy and error (%) of probabilities against gold labels."""
    eps = 1e-7
    if multi_label:
        pred = probs >= threshold
        gold = labels.astype(bool)
        tp, fp, fn = (pred & gold).sum(), (pred & ~gold).sum(), (~pred & gold).sum()
        f1_micro = 2 * tp / max(2 * tp + fp + fn, 1)
        per = [2 * (pred[:, c] & gold[:, c]).sum() / max(pred[:, c].sum() + gold[:, c].sum(), 1)
               for c in range(gold.shape[1])]
        loss = float(-(gold * np.log(probs + eps) + (~gold) * np.log(1 - probs + eps)).mean())
        acc = float((pred == gold).all(1).mean())
        return {"loss": loss, "accuracy": acc, "error": 100 * (1 - acc), "f1_micro": float(f1_micro),
                "f1_macro": float(np.mean(per)), "threshold": threshold}
    loss = float(-np.log(probs[np.arange(len(labels)), labels] + eps).mean())
    acc = float((probs.argmax(1) == labels).mean())
    return {"loss": loss, "accuracy": acc, "error": 100 * (1 - acc)}


def build_classifier_for(cfg, n_classes: int, vocab_size: int, pad_id: int, source_model_cfg: dict | None) -> TextClassifier:
    model_cfg = cfg.model
    if source_model_cfg is not None:
        model_cfg = OmegaConf.merge(cfg.model, {k: source_model_cfg[k] for k in MODEL_SIZE_KEYS})
    return build_classifier(model_cfg, vocab_size, pad_id, n_classes, cfg.train.bptt, cfg.train.max_len)


def load_encoder_from_lm(model: TextClassifier, lm_ckpt: dict) -> None:
    """Take every `encoder.*` weight of the LM; the decoder is dropped, the head starts fresh."""
    enc = {k: v for k, v in lm_ckpt["model"].items() if k.startswith("encoder.")}
    missing, unexpected = model.load_state_dict(enc, strict=False)
    bad = [k for k in missing if k.startswith("encoder.")] + unexpected
    if bad:
        raise UserError(f"The language model's weights do not fit this classifier (keys: {bad[:4]}).",
                        "Use an LM run made by this version of ulmfit.")


def classifier_from_checkpoint(ckpt: dict, device: torch.device) -> TextClassifier:
    """Rebuild a trained classifier exactly as saved (sizes, vocab, classes from the file)."""
    if ckpt.get("kind") != "clf":
        raise UserError(
            f"That run holds a {ckpt.get('stage', '?')} checkpoint ({ckpt.get('kind')}), not a classifier.",
            "Point run= at a train-clf run directory.",
        )
    cfg = OmegaConf.create(ckpt["config"])
    model = build_classifier(OmegaConf.create(ckpt["model_config"]), len(ckpt["numericalizer"]["itos"]),
                             ckpt["pad_id"], len(ckpt["classes"]), cfg.train.bptt, cfg.train.max_len)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()
