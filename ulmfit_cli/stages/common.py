"""What every stage shares: the run directory, its outputs, and the hand-off between stages."""
from __future__ import annotations

import logging
import platform
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from .. import distributed
from ..checkpoints import load_checkpoint, save_checkpoint
from ..errors import UserError
from ..reporting.metrics import MetricsWriter, write_json
from ..reporting.progress import make_progress
from ..runtime import (check_lstm_kernel, check_precision, describe_device, resolve_device, rng_state,
                       seed_everything, set_deterministic, set_rng_state, set_threads)

log = logging.getLogger("ulmfit")

PREVIOUS_STAGE = {"finetune-lm": "pretrain", "train-clf": "finetune-lm"}


def run_dir_of(cfg: DictConfig) -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def has_outputs(path: Path) -> bool:
    return (path / "summary.json").exists() or (path / "checkpoints").exists() or (path / "metrics.csv").exists()


class _NoMetrics:
    """metrics.csv of a data-parallel rank > 0: rank 0 writes the (already reduced) rows."""

    def __call__(self, row: dict) -> None:
        pass

    def rows(self) -> int:
        return 0

    def truncate(self, n_rows: int) -> None:
        pass


class Run:
    """One stage's run directory: config.yaml, metrics.csv, summary.json, checkpoints/.

    Under data-parallel training every rank has a Run on rank 0's directory (to read checkpoints
    from), but only rank 0 writes: metrics, checkpoints and summary.json are no-ops elsewhere."""

    def __init__(self, cfg: DictConfig, run_dir: Path | None = None):
        self.cfg = cfg
        self.dist = distributed.current()
        self.writes = self.dist.is_rank0
        self.dir = Path(run_dir) if run_dir else (self.dist.run_dir or run_dir_of(cfg))
        if self.writes and has_outputs(self.dir) and not cfg.get("resume"):
            raise UserError(
                f"Run directory {self.dir} already holds the outputs of an earlier run; ulmfit never overwrites them.",
                "Leave hydra.run.dir unset (every run gets a new directory), choose a new directory, "
                f"or continue that run with resume={self.dir}.",
            )
        self.ckpt_dir = self.dir / "checkpoints"
        self.device = self.dist.device if self.dist.enabled else resolve_device(cfg.device)
        self.precision = check_precision(cfg.precision, self.device)
        if cfg.get("model") is not None:
            check_lstm_kernel(cfg.model.get("lstm_kernel", "auto"))
        set_threads(cfg.threads)
        seed_everything(cfg.seed)
        set_deterministic(cfg.get("deterministic", False))
        if self.writes:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
            self.metrics = MetricsWriter(self.dir / "metrics.csv", stage=cfg.stage)
        else:
            self.metrics = _NoMetrics()
        self.progress = make_progress(cfg.progress if self.writes else "none")
        self.t0 = time.time()
        log.info("%s run in %s on %s%s", cfg.stage, self.dir, describe_device(self.device),
                 f" x {self.dist.world_size} processes (DDP)" if self.dist.enabled else "")

    def log_row(self, direction: str):
        def write(row: dict) -> None:
            if not self.writes:
                return
            self.metrics({"direction": direction, **row})
            parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                     if k in ("epoch", "split", "loss", "accuracy", "perplexity", "throughput") and v is not None]
            log.info("%s %s", direction, " ".join(parts))

        return write

    def save(self, name: str, payload: dict) -> Path:
        """checkpoints/<name>.pt, with the RNG state after it so that a resumed run which skips
        this finished direction continues the random sequence as an uninterrupted run does."""
        path = self.ckpt_dir / f"{name}.pt"
        if not self.writes:
            return path
        save_checkpoint(path, {"stage": self.cfg.stage, **payload, "rng_after": rng_state(),
                               "config": OmegaConf.to_container(self.cfg, resolve=True)})
        return path

    # -- resumable training state ------------------------------------------------------------
    def save_progress(self, direction: str, trainer_state: dict) -> None:
        """checkpoints/last/<direction>-<step>.pt, keeping the newest `checkpoint.keep`."""
        if not self.writes:
            return
        step = trainer_state["loop"]["global_step"]
        folder = self.ckpt_dir / "last"
        save_checkpoint(folder / f"{direction}-{step:09d}.pt",
                        {"kind": "progress", "stage": self.cfg.stage, "direction": direction,
                         "trainer": trainer_state, "metrics_rows": self.metrics.rows()})
        for old in sorted(folder.glob(f"{direction}-*.pt"))[: -max(self.cfg.checkpoint.keep, 1)]:
            old.unlink()

    def load_progress(self, direction: str) -> dict | None:
        """The newest progress checkpoint of `direction` when resuming, else None."""
        if not self.cfg.get("resume"):
            return None
        found = sorted((self.ckpt_dir / "last").glob(f"{direction}-*.pt"))
        if not found:
            return None
        state = load_checkpoint(found[-1])
        self.metrics.truncate(state["metrics_rows"])
        log.info("resuming %s from %s (epoch %d, step %d)", direction, found[-1].name,
                 state["trainer"]["loop"]["epoch"], state["trainer"]["loop"]["global_step"])
        return state["trainer"]

    def finished(self, direction: str) -> dict | None:
        """When resuming, a direction whose final checkpoint exists is done: return that checkpoint,
        with the RNG state restored to where the direction ended."""
        path = self.ckpt_dir / f"{direction}.pt"
        if not (self.cfg.get("resume") and path.exists()):
            return None
        ckpt = load_checkpoint(path)
        if ckpt.get("rng_after") is not None:
            set_rng_state(ckpt["rng_after"])
        log.info("resuming: %s already finished (%s)", direction, path.name)
        return ckpt

    def finished_result(self, direction: str) -> dict | None:
        ckpt = self.finished(direction)
        return None if ckpt is None else ckpt.get("result")

    def finish(self, results: dict, started_from: str | None = None, **extra) -> dict:
        summary = {
            "stage": self.cfg.stage,
            "run_dir": str(self.dir),
            "started_from": started_from,
            "results": results,
            "wall_time_s": round(time.time() - self.t0, 2),
            "device": describe_device(self.device),
            "precision": self.precision,
            "torch": torch.__version__,
            "python": platform.python_version(),
            **({"processes": self.dist.world_size} if self.dist.enabled else {}),
            **extra,
        }
        if self.writes:
            write_json(self.dir / "summary.json", summary)
        return summary


def find_source_run(value: str | None, stage: str, outputs_root: str, directions: list[str], key: str) -> Path | None:
    """Resolve `pretrained=` / `lm=`: None (from scratch), 'latest', or a run directory."""
    if value is None or str(value).lower() in ("null", "none", ""):
        return None
    prev = PREVIOUS_STAGE[stage]
    need = [f"{d}.pt" for d in directions]
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
        return max(candidates, key=lambda p: (p / "summary.json").stat().st_mtime).resolve()
    path = Path(str(value))
    if not path.is_dir():
        raise UserError(f"{key}={value}: no such run directory.",
                        f"Pass the directory of a `{prev}` run (outputs/{prev}/<time>), latest, or null.")
    missing = [n for n in need if not (path / "checkpoints" / n).exists()]
    if missing:
        raise UserError(
            f"{key}={value} has no checkpoint {', '.join('checkpoints/' + m for m in missing)}.",
            f"Point {key}= at a finished `{prev}` run trained with the same bidirectional= setting "
            f"(directions {', '.join(directions)}), or use {key}=null to train from scratch.",
        )
    return path


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
