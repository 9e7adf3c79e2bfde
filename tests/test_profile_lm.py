"""benchmarks/profile_lm.py --task predict: the FLOPs it counts and the pass it times."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import REPO, SHARED_DATA

sys.path.insert(0, str(REPO / "benchmarks"))
import profile_lm  # noqa: E402

TINY = {"emb": 8, "hidden": 16, "layers": 3, "bs": 4, "bptt": 5}


def test_lstm_forward_flops_of_the_paper_model():
    """400 -> 1152 -> 1152 -> 400: 2 * 4 * (1152 * 1552 + 1152 * 2304 + 400 * 1552) FLOPs a token."""
    paper = {"emb": 400, "hidden": 1152, "layers": 3}
    assert profile_lm.lstm_forward_flops(paper, 10) == 10 * 2 * 4 * (1152 * 1552 + 1152 * 2304 + 400 * 1552)


@pytest.mark.skipif(not (SHARED_DATA / "imdb" / "test.csv.gz").exists(), reason="needs ../shared/data/imdb")
def test_the_predict_pass_classifies_every_review():
    run, tokens = profile_lm.build_predict(500, "fp32", TINY, 6)
    probs = run()
    assert probs.shape == (6, 2) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert tokens > 6 * 20  # real reviews, not empty texts
