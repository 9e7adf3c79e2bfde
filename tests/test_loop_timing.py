"""The train row's elapsed_s is when the epoch's training ended; the evaluation's time shows as
the valid row's elapsed_s minus it (what benchmarks/bench.py --benches e2e reads)."""
import time

import numpy as np
import torch

from ulmfit_cli.config import ModelConfig, ScheduleConfig
from ulmfit_cli.data.batching import LMStream
from ulmfit_cli.models import build_lm
from ulmfit_cli.stages.lm import lm_step
from ulmfit_cli.stages.wiring import HiddenCarry
from ulmfit_cli.training.loop import Trainer
from ulmfit_cli.training.param_groups import Phase
from ulmfit_cli.training.schedules import make_schedule

CPU = torch.device("cpu")
EVAL_S = 0.3


def slow_eval(model) -> dict:
    time.sleep(EVAL_S)
    return {"loss": 1.0}


def test_train_row_elapsed_excludes_evaluation():
    torch.manual_seed(0)
    model = build_lm(ModelConfig(emb_size=8, hidden_size=16), 50, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    trainer = Trainer(model, opt, [1e-3], make_schedule(ScheduleConfig()), lm_step(2.0, 1.0, CPU), slow_eval,
                      device=CPU, carry=HiddenCarry(model), lr_scale=lambda b: b.lr_scale, max_steps_per_epoch=3)
    history = trainer.fit(LMStream([np.random.default_rng(0).integers(9, 50, 2000)], 4, 10), [Phase([True], 2)])
    rows = [(r["split"], r["elapsed_s"]) for r in history]
    assert [s for s, _ in rows] == ["train", "valid", "train", "valid"]
    (_, t1), (_, v1), (_, t2), (_, v2) = rows
    assert v1 - t1 >= EVAL_S - 0.01 and v2 - t2 >= EVAL_S - 0.01  # the evaluation, after the train row
    assert t1 < v1 < t2 < v2
