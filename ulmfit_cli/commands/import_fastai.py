"""`ulmfit import-fastai --weights lstm_fwd.pth --vocab itos_wt103.pkl [--backward lstm_bwd.pth] [--out DIR]`.

Turns fastai's pretrained AWD_LSTM language model (e.g. its WikiText-103 one: lstm_fwd.pth,
lstm_bwd.pth, itos_wt103.pkl) into an ulmfit pretrain run directory (config.yaml, summary.json,
checkpoints/fwd.pt [bwd.pt]) that `ulmfit finetune-lm pretrained=<DIR>` starts from.

Nothing in the two files is executed: the weights are read with torch.load(weights_only=True),
the vocabulary with an unpickler that refuses every global (a list of str needs none).
"""
from __future__ import annotations

import io
import pickle
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional

import torch
from omegaconf import OmegaConf

from ..checkpoints import save_checkpoint
from ..config import compose
from ..data.download import sha256_file
from ..data.tokenizers import WordNumericalizer
from ..errors import UserError
from ..fileutil import dir_built_aside
from ..stages.model_io import lm_payload, load_model
from ..models.fastai_compat import (FastaiFormatError, LMSizes, check_itos, from_fastai_lm, reorder_rows,
                                    vocab_to_ulmfit)
from ..reporting.run_files import write_summary
from .args import flags_to_dotlist, parse

USAGE = ("usage: ulmfit import-fastai --weights lstm_fwd.pth --vocab itos_wt103.pkl "
         "[--backward lstm_bwd.pth] [--out DIR] [--outputs-root outputs]\n"
         "  (KEY=VALUE works too: weights=... vocab=... backward=... out=...)")

HELP = f"""{USAGE}

Converts a fastai AWD_LSTM language model (a state dict as fastai's lstm_fwd.pth, or a
learn.save(..., with_opt=False) file) and its vocabulary (a pickled list of tokens, as
itos_wt103.pkl) into an ulmfit pretrain run directory, by default
<outputs-root>/pretrain/<time>-fastai-import. Then:

    ulmfit finetune-lm pretrained=<that dir> dataset=...   (bidirectional=both with --backward)

  --weights   the forward LM's weights (.pth)
  --vocab     the vocabulary both directions share (.pkl)
  --backward  the backward LM's weights (fastai's lstm_bwd.pth), optional
  --out       the run directory to create (must not exist, or be empty)
"""


@dataclass
class ImportArgs:
    weights: str = "???"
    vocab: str = "???"
    backward: Optional[str] = None
    out: Optional[str] = None
    outputs_root: str = "outputs"
    verbose: bool = False


class _NoGlobals(pickle.Unpickler):
    """Unpickles plain data only: any class or function reference is refused, never imported."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"it refers to {module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("it refers to a persistent object")


def read_itos(path: Path) -> list[str]:
    """fastai's vocabulary pickle (a list of str), read without executing anything."""
    if not path.is_file():
        raise UserError(f"--vocab {path}: no such file.", "Pass fastai's vocabulary pickle (e.g. itos_wt103.pkl).")
    try:
        obj = _NoGlobals(io.BytesIO(path.read_bytes())).load()
        return check_itos(obj)
    except (pickle.UnpicklingError, FastaiFormatError) as e:
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise UserError(
            f"--vocab {path} is not a plain list of tokens ({reason}), so it was refused unopened; "
            "nothing in it was run.",
            "Pass fastai's vocabulary pickle (itos_wt103.pkl, or pickle.dump(list(learn.dls.vocab), f)).",
        ) from None
    except Exception as e:  # truncated, not a pickle, ...
        raise UserError(f"--vocab {path} could not be read as a pickle ({type(e).__name__}: {str(e)[:200]}).",
                        "Pass fastai's vocabulary pickle (e.g. itos_wt103.pkl).") from None


def read_fastai_lm(path: Path, flag: str) -> tuple[dict, LMSizes, list[str]]:
    if not path.is_file():
        raise UserError(f"{flag} {path}: no such file.", "Pass fastai's language-model weights (e.g. lstm_fwd.pth).")
    fix = ("Pass a fastai AWD_LSTM language model saved as a state dict: fastai's lstm_fwd.pth / lstm_bwd.pth, "
           "torch.save(learn.model.state_dict(), path) or learn.save(name, with_opt=False).")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(f"{flag} {path} holds objects other than tensors and plain data (an optimizer state "
                        f"from learn.save?), so it was refused unopened ({str(e).splitlines()[0][:200]}).", fix) from None
    except Exception as e:
        raise UserError(f"{flag} {path} could not be read as a torch file ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200] if str(e) else ''}).", fix) from None
    try:
        return from_fastai_lm(obj)
    except FastaiFormatError as e:
        raise UserError(f"{flag} {path} is not a fastai AWD_LSTM language model: {e}.", fix) from None


def read_models(a: ImportArgs) -> tuple[list[str], dict, dict]:
    """The vocabulary, and per direction (weights, sizes, notes) and the file it came from."""
    itos = read_itos(Path(a.vocab))
    files = {"fwd": Path(a.weights)}
    if a.backward:
        files["bwd"] = Path(a.backward)
    flags = {"fwd": "--weights", "bwd": "--backward"}
    lms = {d: read_fastai_lm(p, flags[d]) for d, p in files.items()}
    sizes = lms["fwd"][1]
    for d, (_, s, _) in lms.items():
        if s.vocab_size != len(itos):
            raise UserError(f"{flags[d]} {files[d]} has {s.vocab_size} embedding rows but --vocab {a.vocab} has "
                            f"{len(itos)} tokens: they are not the same model's.",
                            "Pass the vocabulary the weights were trained with (for fastai's WT103 models: itos_wt103.pkl).")
        if s.model_config() != sizes.model_config():
            raise UserError(f"--backward {files[d]} has another architecture ({s.model_config()}) than --weights "
                            f"({sizes.model_config()}).", "Pass the forward and backward models of one pretraining.")
    return itos, lms, files


def write_run(tmp: Path, out: Path, a: ImportArgs, itos: list[str], lms: dict, files: dict, t0: float) -> dict:
    """checkpoints/<dir>.pt, config.yaml and summary.json of the pretrain run, built in `tmp`."""
    plan = vocab_to_ulmfit(itos)
    sizes = lms["fwd"][1]
    numericalizer = WordNumericalizer(plan.itos, max_vocab=len(plan.itos), min_freq=1)
    cfg = compose("pretrain", [
        "tokenizer=word", f"tokenizer.max_vocab={len(plan.itos)}", "tokenizer.min_freq=1",
        f"bidirectional={'both' if a.backward else 'fwd'}", f"outputs_root={a.outputs_root}",
        *(f"model.{k}={v}" for k, v in sizes.model_config().items()),
    ])
    results = {}
    for d, (state, _, _) in lms.items():
        if not plan.is_identity:
            state = reorder_rows(state, plan.rows)
        # strict: the sizes fit ulmfit's AWD-LSTM exactly
        model = load_model({"kind": "lm", "model": state, "model_config": OmegaConf.to_container(cfg.model),
                            "numericalizer": numericalizer.state()})
        results[d] = {"imported_from": str(files[d].resolve())}
        save_checkpoint(tmp / "checkpoints" / f"{d}.pt", {
            "stage": "pretrain", **lm_payload(model, numericalizer, cfg.model, d, results[d]),
            "config": OmegaConf.to_container(cfg, resolve=True)})
    (tmp / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    provenance = {
        "files": {**{f"{d}_weights": {"path": str(p.resolve()), "sha256": sha256_file(p)} for d, p in files.items()},
                  "vocab": {"path": str(Path(a.vocab).resolve()), "sha256": sha256_file(Path(a.vocab))}},
        "architecture": {**sizes.model_config(), "vocab_size": sizes.vocab_size, "out_bias": sizes.out_bias},
        "special_tokens_moved": not plan.is_identity,
        "special_tokens_added": plan.added,
        "duplicate_tokens_renamed": len(plan.renamed),
        "notes": sorted({n for _, _, notes in lms.values() for n in notes}),
    }
    return write_summary(out, build_dir=tmp, stage="pretrain", results=results, started_from=None,
                         wall_time_s=time.time() - t0, device="cpu", precision="fp32", vocab_size=len(plan.itos),
                         dataset="fastai import", fastai_import=provenance)


def import_into(out: Path, a: ImportArgs, itos: list[str], lms: dict, files: dict, t0: float) -> dict:
    """The pretrain run dir `out`, never seen half-written; returns its summary."""
    with dir_built_aside(out) as tmp:
        return write_run(tmp, out, a, itos, lms, files, t0)


def report(out: Path, a: ImportArgs, summary: dict, pretrained: str | None = None) -> None:
    """What was imported, its notes, and the next command (`pretrained=<pretrained>`, default: the run dir)."""
    info = summary["fastai_import"]
    arch = info["architecture"]
    print(f"imported fastai AWD_LSTM ({', '.join(summary['results'])}; vocab {summary['vocab_size']}, "
          f"emb {arch['emb_size']}, hidden {arch['hidden_size']}, {arch['n_layers']} layers, "
          f"{'tied' if arch['tie_weights'] else 'untied'} decoder) into {out}")
    for t in info["special_tokens_added"]:
        print(f"  note: the vocabulary had no {t}; it was added with the mean embedding")
    if info["duplicate_tokens_renamed"]:
        print(f"  note: {info['duplicate_tokens_renamed']} duplicate token(s) renamed")
    for n in info["notes"]:
        print(f"  note: {n}")
    both = " bidirectional=both" if a.backward else ""
    print(f"next: ulmfit finetune-lm pretrained={pretrained or out}{both} dataset=<your dataset>")


def main(argv: list[str]) -> int:
    a = parse(ImportArgs, flags_to_dotlist(argv, USAGE), USAGE)
    t0 = time.time()
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    out = Path(a.out) if a.out else Path(a.outputs_root) / "pretrain" / f"{stamp}-fastai-import"
    itos, lms, files = read_models(a)
    report(out, a, import_into(out, a, itos, lms, files, t0))
    return 0
