import numpy as np
import pytest
import torch

from ulmfit_cli.config import ModelConfig
from ulmfit_cli.data.batching import ClassifierBatches, LMStream, pad_chunks
from ulmfit_cli.models import build_classifier, build_lm
from ulmfit_cli.models.awd_lstm import LockedDropout, WeightDropLSTM, dropped_embedding
from ulmfit_cli.models.heads import bpt3c_encode, masked_concat_pool

TINY = ModelConfig(emb_size=16, hidden_size=24, n_layers=3)


def test_state_dict_keys_are_the_documented_ones():
    lm = build_lm(TINY, 50, 1)
    keys = set(lm.state_dict())
    assert "encoder.encoder.weight" in keys and "decoder.bias" in keys
    for i in range(3):
        assert {f"encoder.rnns.{i}.weight_ih_l0", f"encoder.rnns.{i}.weight_hh_l0_raw",
                f"encoder.rnns.{i}.bias_ih_l0", f"encoder.rnns.{i}.bias_hh_l0"} <= keys
    assert not any("weight_hh_l0" in k and not k.endswith("_raw") for k in keys)
    # tied decoder: same storage as the embedding
    assert lm.decoder.weight.data_ptr() == lm.encoder.encoder.weight.data_ptr()


def test_layer_sizes_follow_the_paper_shape():
    lm = build_lm(ModelConfig(), 100, 1)
    assert [(r.n_in, r.n_out) for r in lm.encoder.rnns] == [(400, 1152), (1152, 1152), (1152, 400)]


def test_classifier_head_dropouts_are_the_reference_ones():
    # fastai's get_text_classifier and the paper-era script (drops=[dps[4], 0.1]): output_p x
    # drop_mult before the first block, an unscaled 0.1 before the second.
    head = build_classifier(ModelConfig(drop_mult=0.5), 100, 1, 6, bptt=70, max_len=1400).head
    assert [m.p for m in head.layers if isinstance(m, torch.nn.Dropout)] == [0.2, 0.1]
    assert [m.out_features for m in head.layers if isinstance(m, torch.nn.Linear)] == [50, 6]


def test_weight_drop_matches_nn_lstm_in_eval_and_drops_in_train():
    torch.manual_seed(0)
    layer = WeightDropLSTM(5, 7, weight_p=0.5)
    ref = torch.nn.LSTM(5, 7, batch_first=True)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(layer.weight_ih_l0)
        ref.weight_hh_l0.copy_(layer.weight_hh_l0_raw)
        ref.bias_ih_l0.copy_(layer.bias_ih_l0)
        ref.bias_hh_l0.copy_(layer.bias_hh_l0)
    x = torch.randn(3, 4, 5)
    h0 = (torch.zeros(1, 3, 7), torch.zeros(1, 3, 7))
    layer.eval()
    torch.testing.assert_close(layer(x, h0)[0], ref(x, h0)[0])
    layer.train()
    assert not torch.allclose(layer(x, h0)[0], ref(x, h0)[0])


def test_locked_dropout_uses_one_mask_across_time():
    torch.manual_seed(0)
    dp = LockedDropout(0.5).train()
    out = dp(torch.ones(4, 10, 6))
    zero = out == 0
    assert zero.any()
    assert torch.equal(zero, zero[:, :1].expand_as(zero))  # same positions at every step


def test_embedding_dropout_drops_whole_words():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(20, 8)
    ids = torch.tensor([[3, 3, 3, 4, 4, 4]] * 50)
    out = torch.nn.functional.embedding(ids, dropped_embedding(emb.weight, 0.5, training=True))
    for r in range(50):
        row = out[r]
        zeros3 = [bool((row[i] == 0).all()) for i in range(3)]
        assert len(set(zeros3)) == 1  # word 3 dropped everywhere or nowhere
    assert torch.equal(torch.nn.functional.embedding(ids, dropped_embedding(emb.weight, 0.5, training=False)), emb(ids))


def test_concat_pool_excludes_padding():
    states = torch.tensor([[[1.0], [5.0], [3.0]], [[9.0], [2.0], [4.0]]])
    mask = torch.tensor([[False, False, False], [True, False, False]])
    last = torch.tensor([2, 2])
    pooled = masked_concat_pool(states, mask, last)
    assert pooled[0].tolist() == [3.0, 5.0, 3.0]
    assert pooled[1].tolist() == [4.0, 4.0, 3.0]  # the padded 9.0 is in neither max nor mean


def test_classifier_output_does_not_depend_on_batch_mates_or_padding():
    torch.manual_seed(0)
    model = build_classifier(TINY, 60, 1, 3, bptt=5, max_len=40).eval()
    rng = np.random.default_rng(0)
    docs = [rng.integers(9, 60, size=n) for n in (3, 17, 8, 30, 12)]
    alone = torch.cat([model(pad_chunks([d], 1, 5)) for d in docs])
    together = model(pad_chunks(docs, 1, 5))
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=1e-5)


def test_bpt3c_backpropagates_only_through_the_last_max_len_tokens():
    torch.manual_seed(0)
    enc = build_classifier(TINY, 60, 1, 2, bptt=5, max_len=10).encoder.train()
    ids = torch.randint(9, 60, (1, 40))
    ids[0, :30] = 7  # early tokens all id 7, late tokens never 7
    ids[0, 30:] = torch.randint(9, 60, (10,))
    states, mask, last = bpt3c_encode(enc, ids, 5, 10, 1)
    assert states.shape[1] == 10
    states.sum().backward()
    assert enc.encoder.weight.grad[7].abs().sum() == 0
    assert enc.encoder.weight.grad[ids[0, 30:]].abs().sum() > 0


def test_lm_stream_is_contiguous_and_reversible():
    docs = [np.arange(0, 50), np.arange(50, 101)]
    s = LMStream(docs, bs=2, bptt=5, shuffle=False, variable=False)
    xs = [b.x for b in s.epoch(0)]
    ys = [b.y for b in s.epoch(0)]
    x, y = torch.cat(xs, 1), torch.cat(ys, 1)
    assert torch.equal(x[0, :10], torch.arange(10)) and torch.equal(y[0, :10], torch.arange(1, 11))
    assert torch.equal(x[1, :3], torch.arange(50, 53))
    back = torch.cat([b.x for b in LMStream(docs, 2, 5, shuffle=False, variable=False, reverse=True).epoch(0)], 1)
    assert back[0, 0].item() == 100 and back[0, 1].item() == 99


def reference_stream(docs, order, reverse, bs, rows):
    """The stream as fastai's LMDataLoader builds it: every document concatenated in `order`."""
    flat = np.concatenate([docs[i] for i in order]).astype(np.int64)
    flat = flat[::-1].copy() if reverse else flat
    n = ((len(flat) - 1) // bs) * bs + 1
    flat = torch.from_numpy(flat[:n])
    return flat[:-1].view(bs, -1)[rows], flat[1:].view(bs, -1)[rows]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("world_size", [1, 2])
def test_lm_stream_batches_are_windows_of_the_concatenated_documents(reverse, world_size):
    rng = np.random.default_rng(7)
    docs = [rng.integers(0, 1000, n).astype(np.int32) for n in rng.integers(0, 40, 80)]  # some empty
    for rank in range(world_size):
        s = LMStream(docs, 8, 12, seed=5, reverse=reverse, rank=rank, world_size=world_size)
        order = np.random.default_rng([5, 3]).permutation(len(docs))
        x_all, y_all = reference_stream(docs, order, reverse, 8, s.rows)
        batches = list(s.epoch(3))
        x, y = torch.cat([b.x for b in batches], 1), torch.cat([b.y for b in batches], 1)
        assert x.dtype == torch.int64 and x.shape == (8 // world_size, s.stream_len)
        assert torch.equal(x, x_all[:, :x.size(1)]) and torch.equal(y, y_all[:, :y.size(1)])


def test_variable_bptt_scales_lr_and_is_deterministic_per_epoch():
    docs = [np.arange(5000)]
    s = LMStream(docs, bs=4, bptt=20, seed=3)
    a = [(b.x.shape[1], b.lr_scale) for b in s.epoch(1)]
    assert a == [(b.x.shape[1], b.lr_scale) for b in s.epoch(1)]
    assert a != [(b.x.shape[1], b.lr_scale) for b in s.epoch(2)]
    assert all(scale == pytest.approx(n / 20) for n, scale in a)
    assert len({n for n, _ in a}) > 3


def test_classifier_batches_cover_every_document_once_and_sort_for_eval():
    docs = [np.full(n, 9) for n in (5, 50, 7, 30, 2, 9, 11)]
    b = ClassifierBatches(docs, np.arange(7), bs=3, pad_id=1, bptt=4, seed=0)
    seen = np.concatenate([bt.idx for bt in b.epoch(0)])
    assert sorted(seen.tolist()) == list(range(7))
    ev = ClassifierBatches(docs, None, bs=3, pad_id=1, bptt=4, shuffle=False)
    first = next(iter(ev.epoch()))
    assert first.idx.tolist() == [1, 3, 6]


def test_bpt3c_draws_the_weight_masks_once_per_document_batch(monkeypatch):
    """AWD-LSTM keeps one DropConnect mask for a whole forward+backward pass; under BPT3C the pass
    over a document batch is many encoder calls (8 chunks here), which must share it."""
    import ulmfit_cli.models.awd_lstm as awd

    torch.manual_seed(0)
    enc = build_classifier(TINY, 60, 1, 2, bptt=5, max_len=20).encoder.train()
    drawn = []
    real_keep_mask = awd.keep_mask
    monkeypatch.setattr(awd, "keep_mask", lambda x, shape, p: drawn.append(tuple(shape)) or real_keep_mask(x, shape, p))
    weight_shapes = {tuple(r.weight_hh_l0_raw.shape) for r in enc.rnns} | {(60, 1)}
    ids = torch.randint(9, 60, (3, 40))
    states, _, _ = bpt3c_encode(enc, ids, 5, 20, 1)
    weight_draws = [s for s in drawn if s in weight_shapes]
    assert len(weight_draws) == len(enc.rnns) + 1  # not 8 x that
    assert all(r.pinned_hh is None for r in enc.rnns) and enc.pinned_emb is None
    # the first 4 chunks ran under no_grad, yet the shared dropped weights still carry the
    # gradient of the last 4 back to the raw ones
    states.sum().backward()
    assert all(r.weight_hh_l0_raw.grad.abs().sum() > 0 for r in enc.rnns)
    assert enc.encoder.weight.grad.abs().sum() > 0
    # an LM batch (one encoder call) draws its own masks each call, as before
    drawn.clear()
    enc(ids[:, :5])
    enc(ids[:, :5])
    assert len([s for s in drawn if s in weight_shapes]) == 2 * (len(enc.rnns) + 1)
