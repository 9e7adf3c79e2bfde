"""Determinism: on CPU the same seed and config give the same metrics.csv; deterministic=true
switches on torch's deterministic kernels (what matters on GPU)."""
from __future__ import annotations

import csv
import os

import pytest
import torch
from omegaconf import OmegaConf

from conftest import FAST, ulmfit
from ulmfit_cli.config import PretrainConfig
from ulmfit_cli.distributed import Ranks
from ulmfit_cli.runtime import set_deterministic
from ulmfit_cli.stages.context import RunContext

ARGS = [*FAST, "bidirectional=fwd", "train.epochs=2"]
TIMING = ("throughput", "elapsed_s")  # wall-clock columns, the only ones allowed to differ


def metrics(cwd) -> list[dict]:
    run = next((cwd / "outputs" / "pretrain").iterdir())
    return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(open(run / "metrics.csv"))]


@pytest.mark.integration
def test_same_seed_and_config_give_identical_metrics_on_cpu(tmp_path):
    runs = {}
    for name, extra in [("a", []), ("b", []), ("det", ["deterministic=true"]), ("seed1", ["seed=1"])]:
        (tmp_path / name).mkdir()
        ulmfit("pretrain", *ARGS, *extra, cwd=tmp_path / name, env={"OMP_NUM_THREADS": "1"})
        runs[name] = metrics(tmp_path / name)
    assert len(runs["a"]) == 4 and all(r["loss"] for r in runs["a"])
    assert runs["a"] == runs["b"]  # every loss, accuracy, perplexity, grad norm: the same digits
    assert runs["det"] == runs["a"]  # on CPU the deterministic switch changes nothing
    assert [r["loss"] for r in runs["seed1"]] != [r["loss"] for r in runs["a"]]  # the seed is what decides


def test_deterministic_true_switches_on_deterministic_kernels(tmp_path, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    cfg = OmegaConf.structured(PretrainConfig)
    cfg.device, cfg.progress = "cpu", "none"
    set_deterministic(cfg.deterministic)
    RunContext.open(cfg, tmp_path / "off", Ranks())
    assert not torch.are_deterministic_algorithms_enabled() and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    cfg.deterministic = True
    try:
        set_deterministic(cfg.deterministic)  # what the CLI calls before it opens the run
        RunContext.open(cfg, tmp_path / "on", Ranks())
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()  # ops without such a kernel warn, not fail
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert "deterministic: true" in (tmp_path / "on" / "config.yaml").read_text()
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
