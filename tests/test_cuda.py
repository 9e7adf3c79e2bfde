"""The CUDA path: checks that need a GPU, run with `pytest -m cuda` (scripts/gpu_check.sh).

Every test here is marked `cuda` (the default run deselects them: pyproject's addopts) and skips
where torch sees no GPU. ULMFIT_CUDA_TESTS_DEVICE=cpu runs the tests that drive the console
script on the CPU instead (fp16 left out), to check their logic and time them without a GPU;
the tests of cuDNN, NCCL and real out-of-memory still skip there.

What each checks, and the tolerance it allows:
- the fused cuDNN LSTM with DropConnect equals torch's nn.LSTM, the step kernel and an fp64
  reference, forward and gradients, to 1e-5 of the largest value (TF32 off: fp32 products);
- the LM's loss and gradients on CUDA equal an fp64 CPU copy (the fused softmax's GPU chunks);
- under bf16 autocast the LSTM's weight gradients stay within 10% (norm) of fp32's and under 0.1%
  flush to zero (autocast alone would hand cuDNN fp16 with no loss scaling);
- fp32 / bf16 / fp16 training runs: finite losses, the bf16 and fp16 curves within 3% of fp32's
  at every row (seeds 0-2 of the same run spread 5% on CPU, bf16 vs fp32 0.2%), the GradScaler
  on for fp16 alone, AR/TAR on;
- a run killed (SIGKILL) mid-epoch and resumed equals the uninterrupted run: metrics to 1e-5
  relative, weights to 1e-5 (deterministic=true in both, so only the restart can differ);
- deterministic=true: two runs write the same metrics.csv (all but the timing columns);
- a real CUDA out-of-memory ends in the one-paragraph advice, exit 2;
- distributed=ddp distributed.nproc=1 and torchrun --nproc_per_node=1 each write one run dir;
  NCCL itself (a world of one GPU) carries the ranks' collectives, DDP and SyncBatchNorm;
- no warning is printed once per step (the RNN-weights warning of awd-lstm-lm#120 at most once);
- the classifier's peak GPU memory is flat beyond max_len (BPT3C).
"""
from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import FAST, REPO, assert_clean_error

DEVICE = os.environ.get("ULMFIT_CUDA_TESTS_DEVICE", "cuda")
HAVE_CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(DEVICE == "cuda" and not HAVE_CUDA, reason="needs a CUDA GPU (torch sees none)")]
real_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="cuDNN / NCCL / GPU memory: needs a real CUDA GPU")

FAULTS = Path(__file__).parent / "faults"  # sitecustomize.py: ULMFIT_FAULT_KILL_AT_STEP
TIMING = ("throughput", "elapsed_s")  # wall-clock columns, the only ones allowed to differ
# The sample corpus at bs 16 x bptt 40: 23 steps an epoch. Dropouts, AR and TAR on (the quickstart
# turns them off), so weight drop on cuDNN, the dropout RNG and the fp32 regularisers all run.
LM = [*FAST, "bidirectional=fwd", "train.epochs=2", "model.drop_mult=0.5", "train.alpha=2", "train.beta=1",
      f"device={DEVICE}"]
PRECISIONS = ("fp32", "bf16", "fp16") if DEVICE == "cuda" else ("fp32", "bf16")
CURVE_REL_TOL = 0.03


# ---- helpers: console-script runs, several at once ---------------------------------------------------

def start(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """`ulmfit ARGS` in `cwd`, output to files there (several runs share the GPU at once)."""
    cwd.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("ulmfit")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ulmfit_cli"]
    full = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "2", **(env or {})}
    full.pop("ULMFIT_VERBOSE", None)
    proc = subprocess.Popen(cmd + list(args), cwd=cwd, env=full, stdout=open(cwd / "stdout.txt", "w"),
                            stderr=open(cwd / "stderr.txt", "w"))
    proc.cwd = cwd
    return proc


def finish(*procs: subprocess.Popen, timeout: int = 300 if DEVICE == "cuda" else 3600) -> list[SimpleNamespace]:
    done = []
    for p in procs:
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
        done.append(SimpleNamespace(returncode=rc, stdout=(p.cwd / "stdout.txt").read_text(),
                                    stderr=(p.cwd / "stderr.txt").read_text(), cwd=p.cwd, args=p.args))
    return done


def ok(r) -> None:
    assert r.returncode == 0, f"{' '.join(map(str, r.args))} exited {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def run_dirs(cwd: Path, stage: str = "pretrain") -> list[Path]:
    return sorted(p for p in (cwd / "outputs" / stage).iterdir() if p.is_dir())


def the_run(cwd: Path, stage: str = "pretrain") -> Path:
    runs = run_dirs(cwd, stage)
    assert len(runs) == 1, runs
    return runs[0]


def metrics(run: Path) -> list[dict]:
    return list(csv.DictReader(open(run / "metrics.csv")))


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max(max |want|, 1e-12), in fp64."""
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    return float((got - want).abs().max() / want.abs().max().clamp(min=1e-12))


@contextlib.contextmanager
def cudnn_fp32(tf32: bool = False):
    """cuDNN deterministic, its fp32 LSTM in true fp32 (torch's default lets it use TF32, a 10-bit
    mantissa). torch 2.9+ sets that per op (cudnn.rnn.fp32_precision; mixing in the legacy
    allow_tf32 flag is refused there), older torch with allow_tf32."""
    c = torch.backends.cudnn
    rnn = getattr(c, "rnn", None)
    new_api = rnn is not None and hasattr(rnn, "fp32_precision")
    saved = (c.deterministic, c.benchmark, rnn.fp32_precision if new_api else c.allow_tf32)
    c.deterministic, c.benchmark = True, False
    if new_api:
        rnn.fp32_precision = "tf32" if tf32 else "ieee"
    else:
        c.allow_tf32 = tf32
    try:
        yield
    finally:
        c.deterministic, c.benchmark = saved[:2]
        if new_api:
            rnn.fp32_precision = saved[2]
        else:
            c.allow_tf32 = saved[2]


# ---- 1. the fused cuDNN LSTM with DropConnect, fp32 --------------------------------------------------

@real_cuda
def test_fused_cudnn_lstm_with_dropconnect_equals_nn_lstm_step_kernel_and_fp64():
    from ulmfit_cli.models.accel.lstm_kernels import BF16StepLSTM, made_by_cudnn
    from ulmfit_cli.models.awd_lstm import WeightDropLSTM

    dev, p = torch.device("cuda"), 0.5
    B, T, N_IN, H = 8, 30, 48, 64
    torch.manual_seed(0)
    rnn = WeightDropLSTM(N_IN, H, weight_p=p, kernel="fused").to(dev).train()
    keep = torch.rand(4 * H, H, device=dev) >= p  # one DropConnect mask for every path
    x = (0.5 * torch.randn(B, T, N_IN, device=dev)).requires_grad_()
    h0, c0 = [(0.5 * torch.randn(1, B, H, device=dev)).requires_grad_() for _ in range(2)]
    up = [torch.randn(B, T, H, device=dev), torch.randn(1, B, H, device=dev), torch.randn(1, B, H, device=dev)]
    params = [rnn.weight_ih_l0, rnn.weight_hh_l0_raw, rnn.bias_ih_l0, rnn.bias_hh_l0]

    def dropped(raw):
        return torch.where(keep, raw, 0.0) * (1.0 / (1.0 - p))

    def ulmfit_fused():
        rnn.pinned_hh = dropped(rnn.weight_hh_l0_raw)  # as AWDLSTM.one_mask_per_pass pins it
        try:
            out, (h, c) = rnn(x, (h0, c0))
        finally:
            rnn.pinned_hh = None
        assert made_by_cudnn(out), type(out.grad_fn).__name__
        return [out, h, c], [x, h0, c0, *params]

    def step_kernel():
        w_ih, raw, b_ih, b_hh = params
        outs = BF16StepLSTM.apply(x, h0, c0, w_ih, dropped(raw), b_ih, b_hh, torch.float32)
        return list(outs), [x, h0, c0, *params]

    def nn_lstm():  # torch's own module, its weights set to the same (dropped) values
        lstm = torch.nn.LSTM(N_IN, H, batch_first=True).to(dev)
        with torch.no_grad():
            for name, t in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"),
                               (params[0], dropped(params[1]), params[2], params[3])):
                getattr(lstm, name).copy_(t)
        out, (h, c) = lstm(x, (h0, c0))
        return [out, h, c], [x, h0, c0, *lstm.parameters()]

    def grads(run):
        outs, wrt = run()
        g = list(torch.autograd.grad(outs, wrt, up))
        if run is nn_lstm:  # d/d raw w_hh = d/d dropped w_hh through the mask
            g[4] = dropped(g[4])
        return [o.detach() for o in outs] + g

    # fp64 on the CPU: the same values, torch's LSTM
    cpu = [t.detach().double().cpu().requires_grad_() for t in (x, h0, c0, *params)]
    xr, hr, cr, w_ih, raw, b_ih, b_hh = cpu
    keep_cpu = keep.cpu()
    w_hh = torch.where(keep_cpu, raw, 0.0) * (1.0 / (1.0 - p))
    outs = list(torch._VF.lstm(xr, (hr, cr), [w_ih, w_hh, b_ih, b_hh], True, 1, 0.0, True, False, True))
    ref = [o.detach() for o in outs] + list(torch.autograd.grad(outs, cpu, [u.double().cpu() for u in up]))

    names = ["out", "h", "c", "d x", "d h0", "d c0", "d w_ih", "d w_hh_raw", "d b_ih", "d b_hh"]
    with cudnn_fp32(tf32=False):
        for run in (ulmfit_fused, step_kernel, nn_lstm):
            got = grads(run)
            errs = {n: rel_err(g, r) for n, g, r in zip(names, got, ref)}
            assert max(errs.values()) < 1e-5, (run.__name__, errs)
    # torch's default lets cuDNN use TF32 (10-bit mantissa) for an fp32 LSTM: close, not tight
    with cudnn_fp32(tf32=True):
        errs = {n: rel_err(g, r) for n, g, r in zip(names, grads(ulmfit_fused), ref)}
    assert max(errs.values()) < 1e-2, errs


@real_cuda
def test_language_model_loss_and_gradients_on_cuda_equal_an_fp64_cpu_copy():
    """Whole LM (embedding, 3 cuDNN layers, tied decoder, the fused softmax in its 8,192-row GPU
    chunks: 9,600 rows here), dropouts off (drop_mult 0, in training mode: cuDNN has no backward for
    its inference mode): loss and every gradient to 1e-5 relative."""
    from ulmfit_cli.config import ModelConfig
    from ulmfit_cli.models import build_lm

    torch.manual_seed(0)
    cpu = build_lm(ModelConfig(emb_size=32, hidden_size=64, n_layers=3, drop_mult=0.0), 500, 1).double().train()
    gpu = copy.deepcopy(cpu).float().cuda().train()
    ids = torch.randint(2, 500, (16, 601), generator=torch.Generator().manual_seed(1))
    x, y = ids[:, :-1], ids[:, 1:]
    loss_ref = cpu(x, y)[0]
    loss_ref.backward()
    with cudnn_fp32(tf32=False):
        loss = gpu(x.cuda(), y.cuda())[0]
        loss.backward()
    assert abs(loss.item() - loss_ref.item()) < 1e-5 * loss_ref.item()
    for (name, pr), pg in zip(cpu.named_parameters(), gpu.parameters()):
        assert rel_err(pg.grad, pr.grad) < 1e-5, name


@real_cuda
def test_bf16_autocast_lstm_weight_gradients_stay_within_bf16_rounding_and_do_not_flush_to_zero():
    """The paper-size LM at bs 64 x bptt 70, whose mean loss makes the LSTM's weight gradients
    ~1e-6 per entry, below fp16's smallest normal number (6e-5): under bf16 autocast every LSTM
    weight gradient is within 10% (norm) of fp32's (bf16 rounding through 3 layers and 70 steps)
    and under 0.1% of the entries fp32 finds non-zero come out exactly zero. torch's autocast
    hands cuDNN fp16 under any autocast dtype; fp16 without loss scaling flushes the smallest
    ~2% to zero and fails the second check."""
    from ulmfit_cli.config import ModelConfig
    from ulmfit_cli.models import build_lm

    torch.manual_seed(0)
    model = build_lm(ModelConfig(drop_mult=0.0), 30000, 1).cuda().train()  # dropouts off: both passes see one model
    ids = torch.randint(9, 30000, (64, 71), device="cuda", generator=torch.Generator("cuda").manual_seed(1))

    def lstm_grads(autocast: bool):
        model.zero_grad(set_to_none=True)
        model.reset()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            raw, _, _ = model.encoder(ids[:, :-1])
            loss = model(ids[:, :-1], ids[:, 1:])[0]
        loss.backward()
        return {n: p.grad.detach().clone() for n, p in model.named_parameters() if n.startswith("encoder.rnns")}, \
            raw[0].dtype

    with cudnn_fp32(tf32=False):
        ref, _ = lstm_grads(False)
        got, lstm_dtype = lstm_grads(True)
    for name in ref:
        r, g = ref[name].double(), got[name].double()
        rel = float((g - r).norm() / r.norm())
        flushed = float(((g == 0) & (r != 0)).sum() / (r != 0).sum().clamp(min=1))
        assert rel < 0.1 and flushed < 1e-3, (name, f"LSTM ran in {lstm_dtype}", rel, flushed)


@real_cuda
def test_ar_and_tar_are_fp32_under_fp16_autocast_on_cuda():
    """fastai#1335 on the GPU: states of 300 in fp16 (300^2 > 65504) squared under CUDA autocast."""
    from ulmfit_cli.stages.lm import lm_step

    states = torch.full((2, 5, 4), 300.0, dtype=torch.float16, device="cuda")
    states[:, 1::2] = -300.0

    def fake_forward(x, y):
        return torch.tensor(1.0, device="cuda"), states, states

    batch = SimpleNamespace(x=torch.zeros(2, 5, dtype=torch.long), y=torch.zeros(2, 5, dtype=torch.long))
    with torch.autocast("cuda", dtype=torch.float16):
        out = lm_step(alpha=2.0, beta=1.0, device=torch.device("cuda"))(fake_forward, batch)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    assert out.loss.item() == 1.0 + 2.0 * 300.0**2 + 1.0 * 600.0**2


# ---- 2. training in fp32, bf16 and fp16 ----------------------------------------------------------------

def test_fp32_bf16_fp16_training_runs_are_finite_and_follow_the_fp32_curve(tmp_path):
    procs = [start(["pretrain", *LM, f"precision={p}", "checkpoint.keep=1"], tmp_path / p) for p in PRECISIONS]
    runs = {p: r for p, r in zip(PRECISIONS, finish(*procs))}
    rows = {}
    for p, r in runs.items():
        ok(r)
        run = the_run(r.cwd)
        rows[p] = metrics(run)
        assert len(rows[p]) == 4, rows[p]  # train + valid for 2 epochs
        for row in rows[p]:
            assert math.isfinite(float(row["loss"])), (p, row)
            if row["split"] == "valid":
                assert math.isfinite(float(row["perplexity"])), (p, row)
            elif p != "fp16":  # fp16: a step the GradScaler skips has an inf gradient norm
                assert math.isfinite(float(row["grad_norm"])), (p, row)
        valid = [float(row["loss"]) for row in rows[p] if row["split"] == "valid"]
        assert valid[1] < valid[0], (p, valid)  # it learns
        summary = json.loads((run / "summary.json").read_text())
        assert summary["precision"] == p and summary["device"].startswith(DEVICE), summary
        # The GradScaler is on for fp16 alone (its state is empty when disabled)
        last = sorted((run / "checkpoints" / "last").glob("fwd-*.pt"))[-1]
        scaler = torch.load(last, weights_only=True)["trainer"]["scaler"]
        assert bool(scaler) == (p == "fp16"), (p, scaler)
    for p in PRECISIONS[1:]:
        for a, b in zip(rows["fp32"], rows[p]):
            assert (a["epoch"], a["split"]) == (b["epoch"], b["split"])
            la, lb = float(a["loss"]), float(b["loss"])
            assert abs(lb - la) <= CURVE_REL_TOL * la, (p, a["split"], a["epoch"], la, lb)


def test_no_warning_is_printed_once_per_step(tmp_path):
    """awd-lstm-lm#120: a weight-dropped LSTM whose weights are not one cuDNN buffer makes torch warn
    on every call (three layers, every step); Python shows a warning once per place, so 69 steps
    must print it at most once, and no other warning more than once either."""
    (r,) = finish(start(["pretrain", *LM, "train.epochs=3"], tmp_path))
    ok(r)
    assert int(metrics(the_run(tmp_path))[-1]["step"]) >= 60
    out = r.stderr + r.stdout
    assert out.count("not part of single contiguous chunk of memory") <= 1, out[-3000:]
    warned = [line.strip() for line in out.splitlines() if "Warning" in line]
    repeated = {w for w in warned if warned.count(w) > 1}
    assert not repeated, repeated


# ---- 3. resume and determinism -----------------------------------------------------------------------

RESUME = [*LM, "deterministic=true", "checkpoint.every_steps=5", "checkpoint.keep=2"]


def test_killed_run_resumed_on_cuda_equals_the_uninterrupted_run(tmp_path):
    kill_env = {"PYTHONPATH": os.pathsep.join([str(FAULTS), os.environ.get("PYTHONPATH", "")]),
                "ULMFIT_FAULT_KILL_AT_STEP": "12"}  # mid-epoch 1 (23 steps), 2 steps after the step-10 checkpoint
    ref_p, cut_p = start(["pretrain", *RESUME], tmp_path / "ref"), start(["pretrain", *RESUME], tmp_path / "cut", kill_env)
    ref_r, cut_r = finish(ref_p, cut_p)
    ok(ref_r)
    assert cut_r.returncode == -9, (cut_r.returncode, cut_r.stderr[-2000:])
    run = the_run(tmp_path / "cut")
    assert not (run / "summary.json").exists()
    assert sorted(p.name for p in (run / "checkpoints" / "last").glob("fwd-*.pt"))[-1] == "fwd-000000010.pt"

    (resumed,) = finish(start(["pretrain", f"resume={run}"], tmp_path / "cut"))
    ok(resumed)
    ref = the_run(tmp_path / "ref")
    a, b = metrics(ref), metrics(run)
    assert len(a) == len(b) == 4
    for ra, rb in zip(a, b):
        assert [ra[k] for k in ("epoch", "step", "split", "lr")] == [rb[k] for k in ("epoch", "step", "split", "lr")]
        for k in ("loss", "accuracy", "perplexity"):
            assert (ra[k] == rb[k] == "") or float(rb[k]) == pytest.approx(float(ra[k]), rel=1e-5), (k, ra, rb)
    wa = torch.load(ref / "checkpoints" / "fwd.pt", weights_only=True)["model"]
    wb = torch.load(run / "checkpoints" / "fwd.pt", weights_only=True)["model"]
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=1e-5, msg=k)


def test_deterministic_true_gives_identical_metrics_twice(tmp_path):
    a, b = finish(*(start(["pretrain", *LM, "deterministic=true"], tmp_path / n) for n in ("a", "b")))
    ok(a), ok(b)
    ma, mb = metrics(the_run(a.cwd)), metrics(the_run(b.cwd))
    assert len(ma) == 4 and without_timing(ma) == without_timing(mb)


# ---- 4. a real CUDA out-of-memory -----------------------------------------------------------------------

@real_cuda
def test_real_cuda_out_of_memory_gives_the_batch_size_advice(tmp_path):
    """A batch far too large: bs 64 x bptt 3,900 = 250k tokens over a 250k-word vocabulary, whose
    softmax gradient alone is 250k x 250k fp32 = 250 GB, more than any GPU has."""
    data = tmp_path / "corpus"
    data.mkdir()
    words = [f"w{i:x}" for i in range(250_000)]
    (data / "wiki.train.tokens").write_text("\n".join(" ".join(words[i:i + 100]) for i in range(0, len(words), 100)))
    (data / "wiki.valid.tokens").write_text(" ".join(words[:2000]))
    (r,) = finish(start(["pretrain", "dataset=wikitext2", f"dataset.data_dir={data}", "model=awd_lstm",
                         "tokenizer.min_freq=1", "tokenizer.max_vocab=300000", "token_cache=off",
                         "train.bs=64", "train.bptt=3900", "train.variable_bptt=false", "train.epochs=1",
                         "bidirectional=fwd", "progress=none", "device=cuda"], tmp_path / "run"))
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert_clean_error(r, "The GPU ran out of memory (", "Lower train.bs, train.max_len")
    assert len([line for line in r.stderr.splitlines() if line.startswith("error:")]) == 1, r.stderr
    run = the_run(tmp_path / "run")
    assert "ran out of memory" in (run / "train.log").read_text() and not (run / "summary.json").exists()


# ---- 5. data-parallel on one GPU -----------------------------------------------------------------------

def test_ddp_with_one_process_writes_one_run_dir(tmp_path):
    """distributed=ddp distributed.nproc=1 runs in the job's own process (no torchrun); torchrun
    --nproc_per_node=1 starts one worker, which sees WORLD_SIZE=1 and trains alone. Each writes one
    run dir, with no `processes` (that is for N > 1)."""
    ddp = start(["pretrain", *LM, "train.epochs=1", "distributed=ddp", "distributed.nproc=1"], tmp_path / "ddp")
    tr_cwd = tmp_path / "torchrun"
    tr_cwd.mkdir()
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "2"}
    tr = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                           "-m", "ulmfit_cli", "pretrain", *LM, "train.epochs=1"], cwd=tr_cwd, env=env,
                          stdout=open(tr_cwd / "stdout.txt", "w"), stderr=open(tr_cwd / "stderr.txt", "w"))
    tr.cwd = tr_cwd
    for r in finish(ddp, tr):
        ok(r)
        run = the_run(r.cwd)
        summary = json.loads((run / "summary.json").read_text())
        assert "processes" not in summary and summary["device"].startswith(DEVICE), summary
        assert len(metrics(run)) == 2


NCCL_SCRIPT = textwrap.dedent("""
    import copy, numpy as np, torch, torch.distributed as dist
    from ulmfit_cli.config import ModelConfig
    from ulmfit_cli.data.batching import ClfBatch, LMBatch
    from ulmfit_cli.distributed import DDPForward, Ranks
    from ulmfit_cli.models import build_classifier, build_lm
    from ulmfit_cli.stages.clf import clf_step
    from ulmfit_cli.stages.lm import lm_step

    torch.backends.cudnn.deterministic = True
    dev = torch.device("cuda", 0)
    torch.cuda.set_device(dev)
    dist.init_process_group("nccl", device_id=dev)  # env:// (RANK, WORLD_SIZE, MASTER_*)
    assert dist.get_backend() == "nccl" and dist.get_world_size() == 1

    class Ranks1(Ranks):  # the collectives run only with more than one rank: force them over NCCL
        enabled = True

    r = Ranks1(0, 1, 0, dev)
    assert r.sum([1.0, 2.5, 0.0]) == [1.0, 2.5, 0.0]
    assert r.broadcast({"run_dir": "/x"}) == {"run_dir": "/x"}
    assert r.gather_objects(("a", 3)) == [("a", 3)]
    h = torch.randn(1, 4, 8, device=dev)
    assert torch.equal(r.gather_rows([h])[0], h.cpu()) and torch.equal(r.my_rows(h), h)
    r.barrier()

    # The LM through DDP equals the bare model (the mean over one rank is the rank's gradient)
    cfg = ModelConfig(emb_size=32, hidden_size=64, n_layers=3)
    torch.manual_seed(0)
    a = build_lm(cfg, 200, 1).to(dev).train()
    b = copy.deepcopy(a)
    ids = torch.randint(2, 200, (4, 21))
    batch = LMBatch(ids[:, :-1], ids[:, 1:])
    step = lm_step(2.0, 1.0, dev)
    fwd = DDPForward(a, dev)
    torch.manual_seed(1); la = step(fwd, batch).loss; la.backward()
    torch.manual_seed(1); lb = step(b, batch).loss; lb.backward()
    assert abs(la.item() - lb.item()) < 1e-6, (la.item(), lb.item())
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-5, atol=1e-7, msg=n)
    # bf16 autocast through DDP; then gradual unfreezing: DDP is rebuilt for the new trainable set
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert torch.isfinite(step(fwd, batch).loss)
    a.zero_grad(set_to_none=True)
    for p in a.encoder.rnns[0].parameters():
        p.requires_grad_(False)
    old = fwd.ddp
    step(fwd, batch).loss.backward()
    assert fwd.ddp is not old and all(p.grad is None for p in a.encoder.rnns[0].parameters())

    # The classifier with SyncBatchNorm (what train-clf makes under DDP on CUDA), through DDP
    torch.manual_seed(0)
    clf = build_classifier(cfg, 200, 1, 2, 10, 40)
    clf = torch.nn.SyncBatchNorm.convert_sync_batchnorm(clf).to(dev).train()
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in clf.modules())
    x, y = torch.randint(2, 200, (6, 55)), torch.randint(0, 2, (6,))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = clf_step(dev, False)(DDPForward(clf, dev), ClfBatch(x, y, np.arange(6))).loss
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in clf.head.parameters())
    r.broadcast_buffers(clf)
    dist.destroy_process_group()
    print("NCCL OK")
""")


@real_cuda
def test_nccl_process_group_of_one_gpu_carries_collectives_ddp_and_syncbatchnorm(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1",
           "LOCAL_RANK": "0", "OMP_NUM_THREADS": "2", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", NCCL_SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0 and "NCCL OK" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]


# ---- 6. the classifier's memory does not grow with document length beyond max_len ---------------------

@real_cuda
def test_classifier_peak_gpu_memory_is_flat_beyond_max_len():
    """BPT3C: chunks before the last max_len tokens run without gradients, so a training step on
    documents 4x max_len peaks within 5% of one on documents 2x max_len."""
    from ulmfit_cli.config import ModelConfig
    from ulmfit_cli.data.batching import ClfBatch
    from ulmfit_cli.models import build_classifier
    from ulmfit_cli.stages.clf import clf_step
    import numpy as np

    dev, bs, bptt, max_len = torch.device("cuda"), 16, 70, 280
    torch.manual_seed(0)
    model = build_classifier(ModelConfig(emb_size=400, hidden_size=1152), 5000, 1, 2, bptt, max_len).to(dev).train()
    step = clf_step(dev, False)

    def peak(length: int) -> int:
        x = torch.randint(9, 5000, (bs, length))
        batch = ClfBatch(x, torch.randint(0, 2, (bs,)), np.arange(bs))
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step(model, batch).loss.backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()

    peak(2 * max_len)  # warm-up: cuDNN workspaces, gradients allocated
    short, at2, at4 = peak(max_len // 2), peak(2 * max_len), peak(4 * max_len)
    assert short < at2, (short, at2)
    assert at4 <= 1.05 * at2, (at2, at4)
