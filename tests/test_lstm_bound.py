"""benchmarks/lstm_bound.py: the FLOPs it counts per layer, and a small run end to end."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import lstm_bound  # noqa: E402


def test_a_layers_products_are_counted_as_forward_and_backward(monkeypatch):
    """Six products per layer: x @ W_ih, h @ W_hh (per step), and in the backward dX, dW_ih, dW_hh
    and dh (per step); for the paper's 1152 -> 1152 layer at bs 64 x bptt 70 each is
    2 * 4480 * 1152 * 4608 FLOPs."""
    monkeypatch.setattr(lstm_bound, "gemm_rate", lambda m, k, n, reps=20: 100.0)  # GFLOP/s
    gflop, seconds = lstm_bound.ideal_seconds(1152, 1152, 64, 70)
    assert abs(gflop - 6 * 2 * 4480 * 1152 * 4608 / 1e9) < 1e-9
    assert abs(seconds - gflop / 100.0) < 1e-9
    gflop, _ = lstm_bound.ideal_seconds(1152, 400, 64, 70)  # the last layer: 1152 in, 400 out
    assert abs(gflop - (3 * 2 * 4480 * 1152 * 1600 + 3 * 2 * 4480 * 400 * 1600) / 1e9) < 1e-9


def test_both_kernels_run_a_layer_and_the_report_is_written(tmp_path):
    code = (f"import sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import lstm_bound as b; "
            "b.LAYERS = [(8, 16), (16, 8)]; b.gemm_rate = lambda m, k, n, reps=20: 1.0; "
            f"sys.argv = ['x', '--bs', '2', '--bptt', '3', '--reps', '1', '--threads', '1', '--out', {str(tmp_path)!r}]; "
            "b.main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads((tmp_path / "lstm_bound.json").read_text())
    assert [x["layer"] for x in r["layers"]] == ["8 -> 16", "16 -> 8"]
    assert all(x["fused_best_s"] > 0 and x["step_best_s"] > 0 for x in r["layers"])
    assert "| 8 -> 16 |" in (tmp_path / "lstm_bound.md").read_text()
