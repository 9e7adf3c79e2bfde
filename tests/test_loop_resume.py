"""In one process, stopping and restoring the trainer's state is bit-exact at every step."""
import copy

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
DOCS = [np.random.default_rng(0).integers(9, 100, 4000)]


class Snapshots:
    """A callback keeping the weights after every step; stops the loop at `stop_at` if given."""

    def __init__(self, stop_at: int | None = None):
        self.weights, self.stop_at, self.saved = {}, stop_at, None

    def on_step_end(self, trainer, result) -> None:
        self.weights[trainer.state.global_step] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        if trainer.state.global_step == self.stop_at:  # mid-epoch
            self.saved = copy.deepcopy(trainer.state_dict())
            trainer.stop.requested = True


def make(callback: Snapshots):
    torch.manual_seed(0)
    model = build_lm(ModelConfig(emb_size=16, hidden_size=32), 100, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    trainer = Trainer(model, opt, [1e-3], make_schedule(ScheduleConfig()), lm_step(2.0, 1.0, CPU),
                      lambda m: {}, device=CPU, carry=HiddenCarry(model), lr_scale=lambda b: b.lr_scale,
                      callbacks=[callback])
    return trainer, LMStream(DOCS, 4, 20, seed=0)


def test_restored_trainer_continues_bit_exactly():
    ref = Snapshots()
    trainer, stream = make(ref)
    trainer.fit(stream, [Phase([True], 2)])

    first = Snapshots(stop_at=30)
    trainer, stream = make(first)
    trainer.fit(stream, [Phase([True], 2)])
    assert max(first.weights) == 31 and trainer.stopping  # the stop asked after step 30 takes effect at the next

    rest = Snapshots()
    trainer, stream = make(rest)
    trainer.load_state_dict(first.saved)
    trainer.fit(stream, [Phase([True], 2)])
    assert min(rest.weights) == 31 and max(rest.weights) == max(ref.weights)
    for step in rest.weights:
        for k in ref.weights[step]:
            assert torch.equal(ref.weights[step][k], rest.weights[step][k]), (step, k)


def test_train_step_is_the_step_fit_takes():
    """The public train_step, called by hand with fit's LR factors, trains to the same weights as fit."""
    ref = Snapshots()
    trainer, stream = make(ref)
    trainer.fit(stream, [Phase([True], 1)])
    by_hand, stream = make(Snapshots())
    by_hand.model.train()
    n = len(stream)
    for i, batch in zip(range(n), stream.epoch(0)):  # fit takes len(stream) batches of the epoch
        result = by_hand.train_step(batch, by_hand.schedule(i, n))
        assert result.loss is not None and result.units == batch.x.numel()
    final = ref.weights[max(ref.weights)]
    for k, v in by_hand.model.state_dict().items():
        assert torch.equal(v, final[k]), k
