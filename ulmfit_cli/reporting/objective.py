"""`objective=<metric>`: the one number a Hydra task returns to an optimising sweeper (Optuna).

The stages return their summary dict; Optuna's sweeper needs a float. With `objective` set (e.g.
`fwd.val_error`, the column names of sweep.csv), the task returns that final metric instead.
"""
from __future__ import annotations

from ..errors import UserError
from .sweep import flatten_results


def check_objective(cfg) -> None:
    """Before any training: the metric's direction must be one this run produces."""
    name = cfg.get("objective")
    if not name:
        return
    directions = list(cfg.bidirectional.directions)
    prefixes = directions + (["ensemble"] if len(directions) > 1 and cfg.stage == "train-clf" else [])
    prefix, dot, metric = str(name).partition(".")
    if not dot or not metric or prefix not in prefixes:
        raise UserError(f"objective={name}: this run's metrics are named <direction>.<metric> with direction "
                        f"{' or '.join(prefixes)}.",
                        f"Use e.g. objective={prefixes[-1]}.val_error (classifier) or "
                        f"objective={directions[0]}.val_perplexity (language model).")


def objective_value(summary: dict, name: str) -> float:
    """The final metric `name` ('fwd.val_error') of a stage's summary, as a float."""
    metrics = flatten_results((summary or {}).get("results", {}))
    if name not in metrics:
        raise UserError(f"objective={name} is not among this run's final metrics: {', '.join(metrics) or 'none'}.",
                        "Set objective= to one of them (the metric columns of sweep.csv).")
    return metrics[name]
