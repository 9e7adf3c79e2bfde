"""benchmarks/scaling.py: corpora of the asked sizes, and the real pretrain measured on each."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.integration


def test_scaling_bench_measures_cold_and_warm_runs_on_each_size(tmp_path, shared_data):
    out = tmp_path / "scal"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "scaling.py"), "--out", str(out),
                           "--sizes", "20000,250000", "--steps", "3", "--clf-lens", "200,1600"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())["results"]
    assert [r["size"] for r in results] == [20000, 250000]
    for r in results:
        assert r["size"] <= r["words"] < r["size"] + 3000  # stops at the first document past the size
        words = sum(len(ln.split()) for ln in (out / f"corpus_{r['size']}" / "wiki.train.tokens").open()
                    if not ln.startswith(" = Part "))
        assert words == r["words"]
        assert r["cold"]["train_tokens"] == r["warm"]["train_tokens"] > r["words"]  # xxbos, punctuation split
        warm_log = (out / f"run_{r['size']}_warm" / "train.log").read_text()
        assert "token cache hit" in warm_log
        # past the cache's 1M characters the vocabulary is read back, not fitted again
        assert ("token cache: vocabulary of" in warm_log) == (r["size"] == 250000)
        for run in (r["cold"], r["warm"]):
            assert run["tokens_per_s"] > 0 and run["peak_rss_mb"] > 100 and 0 < run["data_s"] < run["process_s"]
            assert 100 < run["training_rss_mb"] <= run["peak_rss_mb"] * 1.05  # sampled: may miss the peak
            assert 50 < run["training_private_mb"] <= run["training_rss_mb"]
    clf = json.loads((out / "results.json").read_text())["clf"]
    assert [c["length"] for c in clf] == [200, 1600]
    assert all(c["docs_per_s"] > 0 and c["peak_rss_mb"] > 100 for c in clf)
    table = (out / "results.md").read_text()
    assert all(f"| {r['words']:,} | {r['cold']['train_tokens']:,} |" in table for r in results)
