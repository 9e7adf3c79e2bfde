"""A document of a million tokens through `ulmfit predict`: bounded memory, input order kept.

BPT3C runs a long document through the encoder in bptt chunks and keeps the states of the last
max_len tokens only (as fastai's SentenceEncoder), so the model's memory does not grow with the
document. What can still grow is the padding: evaluation batches are padded to their longest
document, and a million-token document in a batch of 64 would pad 63 short texts to a million
tokens each (0.5 GB of ids). ClassifierBatches ends such a batch early.

Memory is the peak RSS of the `ulmfit predict` process (os.wait4), compared with the same
command on the short texts alone; what remains is the input itself (text, tokens, ids).
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FAST, ulmfit
from ulmfit_cli.data.batching import ClassifierBatches, pad_chunks
from ulmfit_cli.models.awd_lstm import AWDLSTM
from ulmfit_cli.models.heads import bpt3c_encode, masked_concat_pool

WORDS = "good bad film great awful plot actor boring fun the a movie".split()


def run_measured(*args: str, cwd: Path) -> tuple[int, str, float]:
    """Run `ulmfit ARGS`; returns (exit code, stderr, peak RSS in MB of that process)."""
    exe = Path(sys.executable).with_name("ulmfit")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ulmfit_cli"]
    # One thread: on a busy 2-core machine two OpenMP threads per tiny LSTM step run ~10x slower.
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    err_path = cwd / f"stderr-{random.random()}.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(cmd + list(args), cwd=cwd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait for it again
    return proc.returncode, err_path.read_text(), usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


@pytest.fixture(scope="module")
def clf_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("long")
    ulmfit("train-clf", *FAST, "lm=null", "bidirectional=fwd", "unfreeze=none", cwd=cwd)
    return cwd, next((cwd / "outputs" / "train-clf").iterdir())


@pytest.mark.parametrize("n_tokens", [pytest.param(n, marks=pytest.mark.integration) for n in (100_000, 1_000_000)])
def test_predict_a_huge_document_with_bounded_memory_and_in_order(clf_run, tmp_path, n_tokens):
    cwd, run = clf_run
    rng = random.Random(n_tokens)
    short = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30))) for _ in range(100)]
    huge = " ".join(rng.choice(WORDS) for _ in range(n_tokens))
    texts = short[:40] + [huge] + short[40:]

    def predict(name: str, lines: list[str]) -> tuple[list[dict], float]:
        (tmp_path / f"{name}.txt").write_text("\n".join(lines) + "\n")
        out = tmp_path / f"{name}.jsonl"
        rc, err, peak = run_measured("predict", f"run={run}", f"input={tmp_path / f'{name}.txt'}", f"output={out}",
                                     "device=cpu", cwd=cwd)
        assert rc == 0, err
        return [json.loads(line) for line in out.read_text().splitlines()], peak

    base_rows, base = predict("short", short)
    rows, peak = predict("long", texts)
    assert [r["text"] for r in rows] == texts  # one row per input, in input order
    assert all(r["label"] in ("negative", "positive") for r in rows)
    for r, b in zip(rows[:40] + rows[41:], base_rows):  # a huge batch-mate changes no other score
        assert r["p_positive"] == pytest.approx(b["p_positive"], abs=1e-5)
    # The input costs ~130 bytes a token while it is tokenized (the token strings); the model
    # nothing more. Padding 63 texts to the huge one (before ClassifierBatches split such
    # batches) cost 8 bytes x 64 rows per token and more, states for every position
    # (3 layers x 4 bytes x 64..192 units) at least 1.5 kB a token: either breaks this bound.
    grown = peak - base
    print(f"peak RSS: {base:.0f} MB short texts only, {peak:.0f} MB with a {n_tokens:,}-token document (+{grown:.0f} MB)")
    assert grown < 40 + 250 * n_tokens / 2**20, (base, peak)


def test_eval_batches_do_not_pad_short_texts_to_a_huge_one():
    lengths = [3, 40, 1_000_000, 7] + [5 + i % 50 for i in range(300)]
    docs = [np.full(n, 9, dtype=np.int32) for n in lengths]
    ev = ClassifierBatches(docs, None, bs=64, pad_id=1, bptt=70, shuffle=False)
    order = [b.idx for b in ev.epoch()]
    assert len(order) == len(ev)
    assert sorted(np.concatenate(order).tolist()) == list(range(len(docs)))  # each document once
    assert order[0][0] == 2 and len(order[0]) <= 2  # the huge one with at most one other
    for b in order:
        width, real = max(lengths[i] for i in b), sum(lengths[i] for i in b)
        assert len(b) <= 64 and len(b) * width <= max(2 * real, 64 * 70)
    # ordinary lengths still fill whole batches; training batches are not affected
    assert [len(b) for b in order[1:]][:4] == [64, 64, 64, 64]
    assert len(ClassifierBatches(docs, None, bs=64, pad_id=1, bptt=70)) == (len(docs) + 63) // 64


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_bpt3c_keeps_states_for_the_last_max_len_tokens_only(one_thread):
    torch.manual_seed(0)
    enc = AWDLSTM(50, emb_size=8, hidden_size=16, n_layers=2, pad_id=1).eval()
    long, short = torch.randint(2, 50, (20_000,)).numpy(), torch.randint(2, 50, (8_000,)).numpy()
    ids = pad_chunks([long, short], pad_id=1, bptt=70)
    with torch.no_grad():
        states, mask, last = bpt3c_encode(enc, ids, bptt=70, max_len=700, pad_id=1)
        alone = bpt3c_encode(enc, pad_chunks([short], pad_id=1, bptt=70), bptt=70, max_len=700, pad_id=1)
    # what is kept for pooling is the last max_len tokens (in whole chunks), not 20k positions
    assert states.shape[1] <= 700 + 70 and mask.shape == states.shape[:2]
    # and the shorter, padded row pools to what it gives on its own
    assert torch.allclose(masked_concat_pool(states, mask, last)[1], masked_concat_pool(*alone)[0], atol=1e-5)
