"""In one process, stopping and restoring the trainer's state is bit-exact at every step."""
import copy

import numpy as np
import torch

from ulmfit_cli.config import ModelConfig, ScheduleConfig
from ulmfit_cli.data.batching import LMStream
from ulmfit_cli.models import build_lm
from ulmfit_cli.stages.lm import lm_step
from ulmfit_cli.training.loop import Trainer
from ulmfit_cli.training.param_groups import Phase
from ulmfit_cli.training.schedules import make_schedule

CPU = torch.device("cpu")
DOCS = [np.random.default_rng(0).integers(9, 100, 4000)]


def make(snapshots: dict):
    torch.manual_seed(0)
    model = build_lm(ModelConfig(emb_size=16, hidden_size=32), 100, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    trainer = Trainer(model, opt, [1e-3], make_schedule(ScheduleConfig()), lm_step(2.0, 1.0, CPU),
                      lambda m: {}, device=CPU)
    trainer.on_step = lambda tr: snapshots.__setitem__(
        tr.state.global_step, {k: v.clone() for k, v in tr.model.state_dict().items()})
    return trainer, LMStream(DOCS, 4, 20, seed=0)


def test_restored_trainer_continues_bit_exactly():
    ref: dict = {}
    trainer, stream = make(ref)
    trainer.fit(stream, [Phase([True], 2)])

    first: dict = {}
    trainer, stream = make(first)
    saved = {}
    record = trainer.on_step

    def stop_at_30(tr):
        record(tr)
        if tr.state.global_step == 30:  # mid-epoch
            saved["state"] = copy.deepcopy(tr.state_dict())
            tr.stop_requested = True

    trainer.on_step = stop_at_30
    trainer.fit(stream, [Phase([True], 2)])
    assert max(first) == 30

    rest: dict = {}
    trainer, stream = make(rest)
    trainer.load_state_dict(saved["state"])
    trainer.fit(stream, [Phase([True], 2)])
    assert min(rest) == 31 and max(rest) == max(ref)
    for step in rest:
        for k in ref[step]:
            assert torch.equal(ref[step][k], rest[step][k]), (step, k)
