"""Which LSTM kernel runs a layer: torch's fused one (the reference), or a bf16 step loop for
CPU training.

On CPUs with bf16 instructions, bf16 matrix products are several times faster than fp32 ones,
yet oneDNN's fused bf16 LSTM trains little faster than its fp32 one, because its bf16 backward
pass is no faster than fp32. `BF16StepLSTM` keeps every matrix product in bf16 (the per-step
recurrence, and the input and weight products batched over all steps) and the cell state and
its gradient in fp32. It wins for paper-size layers; smaller layers, inference and GPU runs
keep the fused kernel (cuDNN; oneDNN's bf16 forward alone is fast). benchmarks/bench.py measures
both (README, speed section).
"""
from __future__ import annotations

import torch

KERNELS = ("auto", "fused", "step")  # step: the loop for bf16 CPU training whatever the size (tests, parity)
# Per layer, forward + backward at bs 8-64 x bptt 70, the step loop beat oneDNN's fused bf16 kernel
# for 1152 hidden units and lost for 576 or fewer: the threshold sits between.
STEP_MIN_HIDDEN = 1024


def fused_lstm(x, state, weights, training: bool):
    if x.is_cuda and cuda_bf16_autocast(x.device):
        return cudnn_bf16_lstm(x, state, weights, training)
    out, h, c = torch._VF.lstm(x, state, weights, True, 1, 0.0, training, False, True)
    # has_biases, num_layers, dropout, train, bidirectional, batch_first
    return out, (h, c)


# Under CUDA autocast, torch casts cuDNN's LSTM to fp16 whatever the autocast dtype (its autocast
# wrapper for _cudnn_rnn names fp16 alone), so precision=bf16 would train the LSTM in fp16 with no
# loss scaling, where small gradients flush to zero. Where cuDNN runs a bf16 LSTM (cuDNN 9.13+ with a
# torch that lets it), bf16 autocast hands it bf16 instead; elsewhere autocast's fp16 stays.
_CUDNN_BF16: dict[int, bool] = {}  # device index -> cuDNN ran a bf16 LSTM forward and backward there


def cuda_bf16_autocast(device: torch.device) -> bool:
    return (torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda") == torch.bfloat16
            and cudnn_runs_bf16(device))


def cudnn_runs_bf16(device: torch.device) -> bool:
    """Whether cuDNN itself (not torch's per-step fallback) runs a bf16 LSTM on `device`; tried once."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _CUDNN_BF16:
        import warnings

        ok = False
        try:
            with warnings.catch_warnings(), torch.autocast("cuda", enabled=False), torch.enable_grad():
                warnings.simplefilter("ignore")
                t = dict(device=device, dtype=torch.bfloat16)
                x = torch.zeros(2, 3, 8, **t, requires_grad=True)
                h = torch.zeros(1, 2, 8, **t)
                w = [torch.zeros(32, 8, **t, requires_grad=True), torch.zeros(32, 8, **t, requires_grad=True),
                     torch.zeros(32, **t, requires_grad=True), torch.zeros(32, **t, requires_grad=True)]
                out = torch._VF.lstm(x, (h, h), w, True, 1, 0.0, True, False, True)[0]
                out.float().sum().backward()
                ok = out.dtype == torch.bfloat16 and made_by_cudnn(out) and x.grad is not None
        except RuntimeError:
            ok = False
        _CUDNN_BF16[index] = ok
    return _CUDNN_BF16[index]


def made_by_cudnn(t: torch.Tensor, depth: int = 3) -> bool:
    """Whether cuDNN's RNN op is among the last few autograd nodes that made `t`."""
    todo, seen = [(t.grad_fn, 0)], set()
    while todo:
        fn, d = todo.pop()
        if fn is None or fn in seen or d > depth:
            continue
        seen.add(fn)
        if "cudnn" in type(fn).__name__.lower():
            return True
        todo.extend((nxt, d + 1) for nxt, _ in fn.next_functions)
    return False


def cudnn_bf16_lstm(x, state, weights, training: bool):
    """torch's fused LSTM in bf16 with autocast off; the weights go in as views of one flat bf16
    buffer laid out as cuDNN keeps them (w_ih, w_hh, b_ih, b_hh), so cuDNN uses it as is instead of
    copying the weights each call and warning that they are not one contiguous chunk. The hidden
    state comes back in the dtype it was given (carried between batches at that precision)."""
    with torch.autocast("cuda", enabled=False):
        flat = torch.cat([w.to(torch.bfloat16).reshape(-1) for w in weights])
        views, at = [], 0
        for w in weights:
            views.append(flat[at:at + w.numel()].view(w.shape))
            at += w.numel()
        out, h, c = torch._VF.lstm(x.to(torch.bfloat16), (state[0].to(torch.bfloat16), state[1].to(torch.bfloat16)),
                                   views, True, 1, 0.0, training, False, True)
    return out, (h.to(state[0].dtype), c.to(state[1].dtype))


def wants_step_kernel(x: torch.Tensor, state, weights, kernel: str, model_hidden: int | None = None) -> bool:
    """auto: the step loop where it was measured faster: bf16 autocast training on CPU, in models
    whose hidden layers have STEP_MIN_HIDDEN units or more (all their layers: the paper's last,
    400-unit layer is faster in the loop too at bs 64, and the choice is then one per model)."""
    big_enough = (model_hidden or weights[1].size(1)) >= STEP_MIN_HIDDEN
    return (
        (kernel == "step" or (kernel == "auto" and big_enough))
        and x.device.type == "cpu"
        and torch.is_grad_enabled()
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and any(t.requires_grad for t in (x, *state, *weights))
    )


def lstm_layer(x, state, weights, training: bool, kernel: str = "auto", model_hidden: int | None = None):
    """One batch-first LSTM layer; weights = [w_ih, w_hh, b_ih, b_hh]. Returns (out, (h, c))."""
    if wants_step_kernel(x, state, weights, kernel, model_hidden):
        out, h, c = BF16StepLSTM.apply(x, state[0], state[1], *weights, torch.bfloat16)
        return out, (h, c)
    return fused_lstm(x, state, weights, training)


class BF16StepLSTM(torch.autograd.Function):
    """LSTM layer (PyTorch gate order i, f, g, o) with hand-written backward.

    Matrix products run in `dtype` (bf16 in use; fp32/fp64 in tests, where the result must equal
    torch's LSTM). Everything the backward needs is derived during the forward step, while the
    gates are in cache, so the backward loop is one product and a few multiplies per step:
        D = [i'g, f'c_prev, i(1-g^2), o'tanh(c)]  (x dc, dc, dc, dh gives d pre-activation)
        A = o(1-tanh(c)^2)  (dc += dh * A),   F = f  (dc_prev = dc * F)
    with s' = s(1-s) for the sigmoid gates. D, A and F are stored in `dtype` (bf16: half the
    memory of fp32, as oneDNN's bf16 workspace) and computed with in fp32, as are the cell state
    and its gradient.
    """

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, dtype):
        with torch.autocast("cpu", enabled=False):
            return BF16StepLSTM._forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, dtype)

    @staticmethod
    def _forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, dtype):
        B, T, n_in = x.shape
        H = w_hh.size(1)
        f32 = torch.promote_types(dtype, torch.float32)
        wih, whh = w_ih.to(dtype), w_hh.to(dtype)
        xs = x.to(dtype)
        acts = torch.mm(xs.reshape(B * T, n_in), wih.t()).view(B, T, 4 * H).to(f32)
        acts += (b_ih + b_hh).to(f32)
        whh_t = whh.t()
        # Per step, the backward's factors [D (4H) | A (H) | F (H)] are built in an fp32 scratch row
        # (in cache) and stored with one cast: mixed-dtype element-wise ops each cost a copy.
        saved = x.new_empty(B, T, 6 * H, dtype=dtype)
        scratch = x.new_empty(B, 6 * H, dtype=f32)
        d, a_fac, f = scratch[:, :4 * H], scratch[:, 4 * H:5 * H], scratch[:, 5 * H:]
        hs = x.new_empty(B, T + 1, H, dtype=dtype)  # h_{-1} .. h_{T-1}: the inputs of each step
        hs[:, 0] = h0[0]
        out = x.new_empty(B, T, H, dtype=f32)
        c = c0[0].to(f32)
        for t in range(T):
            a = acts[:, t]
            a += torch.mm(hs[:, t], whh_t)
            i = a[:, :H].sigmoid_()
            torch.sigmoid(a[:, H:2 * H], out=f)
            g = a[:, 2 * H:3 * H].tanh_()
            o = a[:, 3 * H:].sigmoid_()
            torch.addcmul(a, a, a, value=-1, out=d)  # s(1-s) for the sigmoid gates; f's slice next
            torch.addcmul(f, f, f, value=-1, out=d[:, H:2 * H])
            d[:, :H].mul_(g)
            d[:, H:2 * H].mul_(c)
            torch.addcmul(i, i * g, g, value=-1, out=d[:, 2 * H:3 * H])
            c = torch.addcmul(f * c, i, g)
            tc = torch.tanh(c)
            h = torch.mul(o, tc, out=out[:, t])
            d[:, 3 * H:].mul_(tc)
            torch.addcmul(o, h, tc, value=-1, out=a_fac)
            saved[:, t] = scratch
            hs[:, t + 1] = h
        ctx.x_dtype, ctx.w_dtype, ctx.dtype = x.dtype, w_ih.dtype, dtype
        # w_ih is saved as given (a parameter: no extra memory) and cast again in the backward,
        # rather than one bf16 copy per call (BPT3C calls once per chunk)
        ctx.save_for_backward(xs, w_ih, whh, saved, hs)
        return out.to(x.dtype), out[:, -1].unsqueeze(0).to(x.dtype), c.unsqueeze(0).to(x.dtype)

    @staticmethod
    def backward(ctx, dout, dh_last, dc_last):
        xs, w_ih, whh, saved, hs = ctx.saved_tensors
        B, T, H = hs.size(0), hs.size(1) - 1, hs.size(2)
        f32 = torch.promote_types(ctx.dtype, torch.float32)
        need_x, need_h0, need_c0, need_wih, need_whh, need_bih, need_bhh, _ = ctx.needs_input_grad
        scratch = saved.new_empty(B, 6 * H, dtype=f32)
        d, a_fac, f = scratch[:, :4 * H], scratch[:, 4 * H:5 * H], scratch[:, 5 * H:]
        dG = saved.new_empty(B, T, 4 * H)  # D scaled by dc / dh: d loss / d gate pre-activations
        dh_next = dh_last[0].to(f32) if dh_last is not None else saved.new_zeros(B, H, dtype=f32)
        dc_next = dc_last[0].to(f32) if dc_last is not None else saved.new_zeros(B, H, dtype=f32)
        # the bias gradient summed in fp32 as the rows are made: summing the stored bf16 dG at
        # the end converts all of it to fp32 first (a B*T x 4H copy, ~2% of a classifier step)
        need_b = need_bih or need_bhh
        d_rows = saved.new_zeros(B, 4 * H, dtype=f32) if need_b else None
        for t in range(T - 1, -1, -1):
            scratch.copy_(saved[:, t])
            dh = dh_next if dout is None else dout[:, t] + dh_next
            dc = torch.addcmul(dc_next, dh, a_fac)
            d[:, :3 * H].view(B, 3, H).mul_(dc.unsqueeze(1))
            d[:, 3 * H:].mul_(dh)
            dG[:, t] = d
            if need_b:
                d_rows += d
            dh_next = torch.mm(dG[:, t], whh)
            dc_next = dc * f
        dG = dG.view(B * T, 4 * H)
        dgt = dG.t()
        d_wih = torch.mm(dgt, xs.reshape(B * T, -1)).to(ctx.w_dtype) if need_wih else None
        d_whh = torch.mm(dgt, hs[:, :T].reshape(B * T, H)).to(ctx.w_dtype) if need_whh else None
        db = d_rows.sum(0).to(ctx.w_dtype) if need_b else None
        dx = torch.mm(dG, w_ih.to(ctx.dtype)).view(B, T, -1).to(ctx.x_dtype) if need_x else None
        return (dx, dh_next.to(ctx.x_dtype).unsqueeze(0) if need_h0 else None,
                dc_next.to(ctx.x_dtype).unsqueeze(0) if need_c0 else None, d_wih, d_whh, db, db, None)
