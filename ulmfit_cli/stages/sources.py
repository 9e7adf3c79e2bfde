"""The hand-off between stages: which earlier run a stage starts from, and its LM checkpoints."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from ..checkpoints import load_checkpoint
from ..data import download_registry
from ..errors import UserError

PREVIOUS_STAGE = {"finetune-lm": "pretrain", "train-clf": "finetune-lm"}
SOURCE_FILE = "source.json"  # in a run dir: the run its pretrained= / lm= resolved to
log = logging.getLogger("ulmfit")


def find_source_run(value: str | None, stage: str, outputs_root: str, directions: list[str], key: str,
                    data_root: str | None = None) -> Path | None:
    """Resolve `pretrained=` / `lm=`: None (from scratch), 'latest', a run directory, or (pretrained=
    only) the name of a downloaded model, `wt103`: the run `ulmfit download wt103` imported under the
    data root. The name wins over a folder of that name in the current directory (pass ./wt103 for that)."""
    if value is None or str(value).lower() in ("null", "none", ""):
        return None
    prev = PREVIOUS_STAGE[stage]
    need = [f"{d}.pt" for d in directions]
    if stage == "finetune-lm" and str(value) in download_registry.pretrained_names():
        return _downloaded_run(str(value), data_root, key, need)
    if str(value) == "latest":
        root = Path(outputs_root) / prev
        candidates = [p for p in root.glob("*") if (p / "summary.json").exists()
                      and all((p / "checkpoints" / n).exists() for n in need)]
        if not candidates:
            raise UserError(
                f"{key}=latest found no finished `{prev}` run with checkpoints {', '.join(need)} under {root}.",
                f"Run `ulmfit {prev}` first (with bidirectional= matching this run), pass {key}=<run dir>, "
                f"or {key}=null to train from scratch.",
            )
        chosen = max(candidates, key=lambda p: (p / "summary.json").stat().st_mtime).resolve()
        log.info(_latest_note(key, chosen, root, candidates))
        return chosen
    path = Path(str(value))
    if not path.is_dir():
        raise UserError(f"{key}={value}: no such run directory.",
                        f"Pass the directory of a `{prev}` run (outputs/{prev}/<time>), latest, or null.")
    require_checkpoints(path, need, f"{key}={value}",
                        f"Point {key}= at a finished `{prev}` run trained with the same bidirectional= setting "
                        f"(directions {', '.join(directions)}), or use {key}=null to train from scratch.")
    return path


def _latest_note(key: str, chosen: Path, root: Path, finished: list[Path]) -> str:
    """Which run `latest` picked and on what data, and the newer runs it passed over: a user who
    started another run since (still going, stopped, or failed) sees that it was not the one."""
    from omegaconf import OmegaConf  # here: the rest of this module needs no config library

    try:
        data = OmegaConf.load(chosen / "config.yaml").get("dataset") or {}
        on = f" (dataset {data.get('name')}{', ' + str(data.train_file) if data.get('train_file') else ''})"
    except Exception:  # a note only: an unreadable config must not stop the run that found this LM
        on = ""
    done, started = {f.resolve() for f in finished}, (chosen / "config.yaml").stat().st_mtime
    newer = sorted(p.name for p in root.glob("*") if (p / "config.yaml").is_file()
                   and (p / "config.yaml").stat().st_mtime > started and p.resolve() not in done)
    skipped = f"; passed over newer unfinished run(s) {', '.join(newer)}" if newer else ""
    return f"{key}=latest: starting from {chosen}{on}, the newest finished run{skipped}."


def source_scores(run: Path | None, directions: list[str]) -> dict:
    """The validation scores the source LM run recorded per direction (its perplexity above all),
    so that a classifier's summary says how good the LM under it was; {} from scratch."""
    if run is None:
        return {}
    try:
        results = json.loads((run / "summary.json").read_text()).get("results", {})
    except (OSError, ValueError):
        return {}
    keep = ("val_perplexity", "val_loss", "val_accuracy")
    return {d: {k: results[d][k] for k in keep if k in results.get(d, {})} for d in directions if d in results}


def require_checkpoints(run: Path, need: list[str], what: str, fix: str) -> None:
    missing = [n for n in need if not (run / "checkpoints" / n).is_file()]
    if missing:
        raise UserError(f"{what} has no checkpoint {', '.join('checkpoints/' + m for m in missing)}.", fix)


def source_lms(ctx, key: str) -> tuple[Path | None, dict]:
    """The run that `pretrained=` / `lm=` (`key`) names, and its LM checkpoint per direction (None:
    from scratch); recorded in the run dir's source.json for a resume of this run."""
    cfg = ctx.cfg
    directions = list(cfg.bidirectional.directions)
    run = find_source_run(pinned_source(ctx, key), cfg.stage, cfg.outputs_root, directions, key, cfg.data_root)
    if ctx.writes:
        (ctx.dir / SOURCE_FILE).write_text(json.dumps({key: str(run) if run else None}) + "\n")
    return run, {d: load_lm_checkpoint(run, d, key) if run else None for d in directions}


def pinned_source(ctx, key: str) -> str | None:
    """`latest` is the newest finished run when a run begins, and the run it began from when it
    resumes: a newer one may have finished since, and its vocabulary would not fit the saved weights."""
    value, record = ctx.cfg[key], ctx.dir / SOURCE_FILE
    if not (ctx.cfg.resume and str(value) == "latest" and record.exists()):
        return value
    began = json.loads(record.read_text()).get(key)
    log.info("%s=latest: resuming, so from the run this one began from, %s", key, began)
    return began


def load_lm_checkpoint(run_dir: Path, direction: str, key: str) -> dict:
    ckpt = load_checkpoint(run_dir / "checkpoints" / f"{direction}.pt")
    if ckpt.get("kind") != "lm":
        raise UserError(
            f"{key}={run_dir} holds a {ckpt.get('stage', '?')} checkpoint ({ckpt.get('kind', '?')}), not a language model.",
            f"Point {key}= at a pretrain or finetune-lm run directory.",
        )
    emb = ckpt.get("model", {}).get("encoder.encoder.weight")
    vocab, size = len(ckpt.get("numericalizer", {}).get("itos", [])), ckpt.get("model_config", {}).get("emb_size")
    if emb is not None and (emb.shape[0] != vocab or (size is not None and emb.shape[1] != size)):
        raise UserError(
            f"{key}={run_dir}: checkpoints/{direction}.pt does not match itself: its embedding matrix is "
            f"{tuple(emb.shape)} but its vocabulary has {vocab} tokens and its model_config emb_size={size} "
            "(a checkpoint from another vocabulary or model size, or an edited file).",
            f"Point {key}= at an unmodified pretrain or finetune-lm run directory.",
        )
    return ckpt


def _downloaded_run(name: str, data_root: str | None, key: str, need: list[str]) -> Path:
    run = download_registry.pretrained_run_dir(name, data_root)
    root = f" --dest {run.parent.parent}" if data_root else ""
    if not (run / "summary.json").is_file():
        raise UserError(
            f"{key}={name}: the published {name} model is not downloaded here (no {run}).",
            f"Run `ulmfit download {name}{root}` first (it fetches fastai's model and imports it there), "
            f"or pass {key}=<run dir>.")
    require_checkpoints(run, need, f"{key}={name}: {run}", f"Run `ulmfit download {name}{root} --force` to fetch and "
                        "import it again.")
    return run.resolve()
