import math

import pytest

from ulmfit_cli.config import ScheduleConfig, UnfreezeConfig
from ulmfit_cli.training.param_groups import discriminative_lrs, unfreeze_plan
from ulmfit_cli.training.schedules import make_schedule, one_cycle, stlr


def test_stlr_paper_values_at_known_points():
    T, cut_frac, ratio = 1000, 0.1, 32
    cut = math.floor(T * cut_frac)
    assert stlr(0, T, cut_frac, ratio) == pytest.approx(1 / 32)
    assert stlr(cut, T, cut_frac, ratio) == pytest.approx(1.0)
    assert stlr(T, T, cut_frac, ratio) == pytest.approx(1 / 32)
    # mid-way up: p = 0.5 -> (1 + 0.5 * 31) / 32
    assert stlr(cut // 2, T, cut_frac, ratio) == pytest.approx((1 + 0.5 * 31) / 32)
    # on the way down, t = cut + 450: p = 1 - 450 / (100 * 9) = 0.5
    assert stlr(cut + 450, T, cut_frac, ratio) == pytest.approx((1 + 0.5 * 31) / 32)


def test_stlr_rises_then_falls():
    vals = [stlr(t, 200) for t in range(201)]
    peak = vals.index(max(vals))
    assert peak == 20
    assert all(a < b for a, b in zip(vals[:peak], vals[1:peak + 1]))
    assert all(a > b for a, b in zip(vals[peak:-1], vals[peak + 1:]))


def test_one_cycle_endpoints():
    assert one_cycle(0, 100, 0.25, 25, 1e5) == pytest.approx(1 / 25)
    assert one_cycle(25, 100, 0.25, 25, 1e5) == pytest.approx(1.0)
    assert one_cycle(100, 100, 0.25, 25, 1e5) == pytest.approx(1e-5)


def test_make_schedule_uses_config():
    s = make_schedule(ScheduleConfig(name="stlr", cut_frac=0.2, ratio=16))
    assert s(20, 100) == pytest.approx(1.0) and s(0, 100) == pytest.approx(1 / 16)
    assert make_schedule(ScheduleConfig(name="constant"))(7, 100) == 1.0


def test_discriminative_lrs_divide_by_decay_per_layer():
    lrs = discriminative_lrs(0.01, 5, 2.6)
    assert lrs[-1] == pytest.approx(0.01)
    for lo, hi in zip(lrs, lrs[1:]):
        assert hi / lo == pytest.approx(2.6)


def test_gradual_unfreezing_adds_one_group_per_epoch():
    phases = unfreeze_plan(UnfreezeConfig(name="gradual", steps=[1, 2, 3, 4]), 5, 6)
    assert [p.trainable for p in phases] == [
        [False, False, False, False, True],
        [False, False, False, True, True],
        [False, False, True, True, True],
        [False, True, True, True, True],
        [True] * 5,
    ]
    assert [p.epochs for p in phases] == [1, 1, 1, 1, 2]


def test_other_unfreeze_plans():
    assert [p.trainable for p in unfreeze_plan(UnfreezeConfig(name="none"), 3, 4)] == [[True] * 3]
    assert [p.trainable for p in unfreeze_plan(UnfreezeConfig(name="last"), 3, 4)] == [[False, False, True]]
    chain = unfreeze_plan(UnfreezeConfig(name="chain_thaw"), 3, 5)
    assert [p.trainable for p in chain] == [[False, False, True], [False, True, False], [True, False, False], [True] * 3]
    assert chain[-1].epochs == 2


def test_a_budget_spent_mostly_frozen_is_warned_about():
    from ulmfit_cli.config import ModelConfig
    from ulmfit_cli.models import build_classifier, classifier_group_count
    from ulmfit_cli.stages.train_clf import short_budget_warning

    n = classifier_group_count(ModelConfig(n_layers=3))
    assert n == len(build_classifier(ModelConfig(emb_size=8, hidden_size=8, n_layers=3), 20, 1, 2, 5, 20).layer_groups())
    gradual = UnfreezeConfig(name="gradual", steps=[1, 2, 3, 4])
    msg = short_budget_warning(unfreeze_plan(gradual, n, 5), gradual, 5)  # 4 partly frozen epochs, 1 full
    assert "spends 4 of the 5 epochs" in msg and "train.epochs=8" in msg and "unfreeze=none" in msg
    assert "this run trains" not in msg
    msg = short_budget_warning(unfreeze_plan(gradual, n, 3), gradual, 3)  # asked 3: the phases make it 5
    assert "train.epochs=3 is fewer than its 4 phase(s)" in msg and "this run trains 5 epochs, not 3" in msg
    assert short_budget_warning(unfreeze_plan(gradual, n, 8), gradual, 8) is None  # 4 and 4
    head_first = UnfreezeConfig(name="gradual", steps=[1])  # not mostly frozen, but 2 epochs for the 1 asked
    assert short_budget_warning(unfreeze_plan(head_first, n, 1), head_first, 1) == (
        "unfreeze=gradual: train.epochs=1 is fewer than its 1 phase(s) and one epoch of all layers need, "
        "so this run trains 2 epochs, not 1.")
    none = UnfreezeConfig(name="none")
    assert short_budget_warning(unfreeze_plan(none, n, 1), none, 1) is None


def test_slanted_cosine_warms_up_like_stlr_then_decays_along_a_cosine():
    from ulmfit_cli.training.schedules import SCHEDULES

    s = make_schedule(ScheduleConfig(name="slanted_cosine", cut_frac=0.1, ratio=32))
    T = 100  # cut = 10, then 90 steps of decay
    assert [s(t, T) for t in (0, 5, 10)] == pytest.approx([1 / 32, (1 + 0.5 * 31) / 32, 1.0])  # as stlr
    assert s(5, T) == pytest.approx(stlr(5, T, 0.1, 32))
    # 30 of 90 decay steps: p = (1 + cos(pi / 3)) / 2 = 0.75; half-way: p = 0.5; the end: lr / ratio
    assert [s(t, T) for t in (40, 55, 100)] == pytest.approx(
        [(1 + 0.75 * 31) / 32, (1 + 0.5 * 31) / 32, 1 / 32])
    assert SCHEDULES.ignored_knobs("slanted_cosine", {"cut_frac", "ratio", "pct_start"}) == [
        ("pct_start", "add schedule=one_cycle to use it")]


def test_the_stage_optimizer_is_fused_adamw_with_the_loop_s_arithmetic():
    import torch

    from ulmfit_cli.config import compose
    from ulmfit_cli.models import build_lm
    from ulmfit_cli.stages.wiring import make_optimizer

    cfg = compose("pretrain", ["model=tiny"])

    def trained(fused: bool):
        torch.manual_seed(0)
        model = build_lm(cfg.model, 200, 1)
        opt, lrs = make_optimizer(cfg, model.layer_groups())
        if not fused:  # the same groups and hyper-parameters through torch's per-tensor loop
            kept = ("betas", "eps", "weight_decay")
            opt = torch.optim.AdamW([{"params": g["params"], "lr": g["lr"]} for g in opt.param_groups],
                                    **{k: opt.defaults[k] for k in kept}, foreach=False)
        assert opt.defaults["fused"] is (True if fused else None)
        for step in range(3):
            for p in model.parameters():
                p.grad = torch.randn(p.shape, generator=torch.Generator().manual_seed(step)) * 0.1
            opt.step()
        return [p.detach().clone() for p in model.parameters()]

    fused, loop = trained(True), trained(False)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(fused, loop))
    torch.manual_seed(0)
    untrained = [p.detach() for p in build_lm(cfg.model, 200, 1).parameters()]
    assert all((a - b).abs().max() > 1e-4 for a, b in zip(fused, untrained) if a.dim() > 1)  # it did train
