"""Known-value tests for ulmfit_cli.data.tokenizers (word rules, vocab, spm, state, embeddings)."""
from __future__ import annotations

import io
import random
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from ulmfit_cli.config import TokenizerConfig
from ulmfit_cli.data import tokenizers as tk
from ulmfit_cli.data.tokenizers import pool
from ulmfit_cli.data.tokenizers import spm as spm_mod
from ulmfit_cli.data.tokenizers import (
    BOS_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    SpmNumericalizer,
    WordNumericalizer,
    fit_numericalizer,
    numericalizer_from_state,
    word_tokenize,
)
from ulmfit_cli.errors import UserError
from ulmfit_cli.models.vocab_mapping import map_bias, map_embeddings


# --------------------------------------------------------------------------- word rules
def test_special_token_order_and_ids():
    assert SPECIAL_TOKENS == ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep",
                              "xxup", "xxmaj"]
    assert (UNK_ID, PAD_ID, BOS_ID) == (0, 1, 2)
    assert (tk.UNK, tk.PAD, tk.BOS, tk.TK_MAJ) == ("xxunk", "xxpad", "xxbos", "xxmaj")


def test_rules_caps_maj_rep():
    assert word_tokenize("This is GREAT!!!!") == [
        "xxbos", "xxmaj", "this", "is", "xxup", "great", "xxrep", "4", "!"]


def test_char_rep_needs_four():
    assert word_tokenize("wow!!!") == ["xxbos", "wow", "!", "!", "!"]
    assert word_tokenize("sooooo good") == ["xxbos", "s", "xxrep", "5", "o", "good"]


def test_single_capital_letter_gets_no_marker():
    # fastai: xxup / xxmaj only for tokens of 2+ characters
    assert word_tokenize("I saw A cat") == ["xxbos", "i", "saw", "a", "cat"]


def test_contractions():
    assert word_tokenize("I don't think it's fine, can't you? We'll see.") == [
        "xxbos", "i", "do", "n't", "think", "it", "'s", "fine", ",", "ca", "n't", "you", "?",
        "xxmaj", "we", "'ll", "see", "."]
    # inner apostrophe of a name stays, the possessive splits
    assert word_tokenize("o'brien's car") == ["xxbos", "o'brien", "'s", "car"]
    # curly apostrophe is normalised
    assert word_tokenize("isn\u2019t") == ["xxbos", "is", "n't"]


def test_word_repetition():
    assert word_tokenize("no no no no way") == ["xxbos", "xxwrep", "4", "no", "way"]
    assert word_tokenize("go go go go go!") == ["xxbos", "xxwrep", "5", "go", "!"]
    # three times is not a repetition
    assert word_tokenize("no no no way") == ["xxbos", "no", "no", "no", "way"]


def test_numbers_abbreviations_punctuation():
    assert word_tokenize("The U.S. paid $1,000.50 (at 12:30) e.g. to Mr. Smith/Jones #1") == [
        "xxbos", "xxmaj", "the", "xxup", "u.s.", "paid", "$", "1,000.50", "(", "at", "12:30", ")",
        "e.g.", "to", "xxmaj", "mr.", "xxmaj", "smith", "/", "xxmaj", "jones", "#", "1"]


def test_fix_html_and_wikitext_artefacts():
    assert word_tokenize("a<br />b &amp; c &quot;d&quot;") == [
        "xxbos", "a", "\n", "b", "&", "c", '"', "d", '"']
    assert word_tokenize(" well @-@ known , 1 @,@ 000 <unk> \n \n isn 't") == [
        "xxbos", "well", "-", "known", ",", "1,000", "xxunk", "\n", "is", "n't"]


def test_word_decode_undoes_rules():
    n = WordNumericalizer.from_counter(
        __import__("collections").Counter(word_tokenize("This is GREAT!!!! no no no no")), 100, 1)
    assert n.decode(n.encode("This is GREAT!!!!")) == "This is GREAT!!!!"
    assert n.decode(n.encode("no no no no")) == "no no no no"
    assert n.decode([BOS_ID, PAD_ID] + list(n.encode("This is")[1:]) + [PAD_ID]) == "This is"


# --------------------------------------------------------------------------- word vocabulary
CORPUS = ["a a a b b c", "a b d"]  # a:4 b:3 c:1 d:1


def _word(max_vocab=60000, min_freq=2):
    return fit_numericalizer(CORPUS, TokenizerConfig(name="word", max_vocab=max_vocab,
                                                     min_freq=min_freq))


def test_min_freq_and_max_vocab():
    assert _word(min_freq=2).itos == SPECIAL_TOKENS + ["a", "b"]
    assert _word(min_freq=1).itos == SPECIAL_TOKENS + ["a", "b", "c", "d"]  # ties: alphabetical
    assert _word(min_freq=1, max_vocab=10).itos == SPECIAL_TOKENS + ["a"]
    assert len(_word(min_freq=1, max_vocab=11)) == 11


def test_unknown_word_and_bos():
    n = _word()
    ids = n.encode("a zzz b")
    assert ids.dtype == np.int32
    assert ids.tolist() == [BOS_ID, 9, UNK_ID, 10]
    assert n.stoi["a"] == 9 and n.bos_id == 2 and n.pad_id == 1 and n.kind == "word"
    assert n.decode(ids) == "a xxunk b"


def test_dictconfig_and_bad_name():
    cfg = OmegaConf.structured(TokenizerConfig(min_freq=1))
    assert fit_numericalizer(CORPUS, cfg).itos[9:] == ["a", "b", "c", "d"]
    cfg.name = "bytes"
    with pytest.raises(UserError) as e:
        fit_numericalizer(CORPUS, cfg)
    msg = str(e.value)
    assert "tokenizer.name" in msg and "word" in msg and "spm" in msg


def test_max_vocab_below_specials_is_user_error():
    with pytest.raises(UserError):
        _word(max_vocab=5)


# --------------------------------------------------------------------------- state
def _walk_plain(x, path="state"):
    if isinstance(x, dict):
        for k, v in x.items():
            assert isinstance(k, str), f"{path}: key {k!r}"
            _walk_plain(v, f"{path}.{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            _walk_plain(v, f"{path}[{i}]")
    else:
        assert x is None or type(x) in (str, int, float, bool, bytes), f"{path}: {type(x)}"


def _torch_roundtrip(state):
    buf = io.BytesIO()
    torch.save({"tokenizer": state}, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)["tokenizer"]


def test_word_state_roundtrip():
    n = _word(min_freq=1)
    st = n.state()
    _walk_plain(st)
    for st2 in (st, _torch_roundtrip(st)):
        m = numericalizer_from_state(st2)
        assert isinstance(m, WordNumericalizer)
        assert m.itos == n.itos and m.identity() == n.identity()
        assert m.encode("a b c zz d").tolist() == n.encode("a b c zz d").tolist()
    assert len(n.identity()) == 64 and n.identity() != _word(min_freq=2).identity()


def test_bad_state_is_user_error():
    with pytest.raises(UserError):
        numericalizer_from_state({"kind": "bytes"})
    with pytest.raises(UserError):
        numericalizer_from_state({})


def test_encode_many_parallel_equals_serial(monkeypatch):
    rng = random.Random(1)
    words = ["alpha", "Beta", "GAMMA", "delta", "don't", "it's", "!!!!", "x", "y", "z"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 30))) for _ in range(300)]
    n = fit_numericalizer(texts, TokenizerConfig(min_freq=1))
    serial = n.encode_many(texts, workers=1)
    pools = []

    class SpyPool(pool.ProcessPoolExecutor):
        def __init__(self, *a, **k):
            pools.append(k.get("max_workers"))
            super().__init__(*a, **k)

    monkeypatch.setattr(pool, "PARALLEL_MIN_CHARS", 0)
    monkeypatch.setattr(pool, "ProcessPoolExecutor", SpyPool)
    par = n.encode_many(texts, workers=2)
    assert len(par) == len(serial)
    assert all(a.dtype == np.int32 and np.array_equal(a, b) for a, b in zip(par, serial))
    if (pool.os.cpu_count() or 1) > 1:
        assert pools == [2]


@pytest.mark.parametrize("workers", [1, 2])
def test_fit_and_encode_in_one_pass_equals_fit_then_encode(monkeypatch, workers):
    rng = random.Random(2)
    words = ["alpha", "Beta", "GAMMA", "delta", "don't", "xxbos", "!!!!", "rare1", "rare2", "x"]
    texts = [" ".join(rng.choice(words[:6]) for _ in range(rng.randint(0, 30))) for _ in range(300)]
    texts += ["rare1 only once", "", "rare2 rare2 twice"]
    monkeypatch.setattr(pool, "PARALLEL_MIN_CHARS", 0)
    cfg = TokenizerConfig(min_freq=2, max_vocab=14)  # cuts the vocabulary: some words become xxunk
    expected = fit_numericalizer(texts, cfg)
    num, flat, lens = tk.fit_and_encode(texts, cfg, workers=workers)
    docs = tk.split_ids(flat, lens)
    assert num.itos == expected.itos and len(num.itos) == 14
    assert "rare1" not in num.itos  # seen once: below min_freq
    assert len(docs) == len(texts)
    assert all(a.dtype == np.int32 and np.array_equal(a, expected.encode(t)) for a, t in zip(docs, texts))
    assert (np.concatenate(docs) == tk.UNK_ID).any()


def test_fit_and_encode_of_text_without_words_is_user_error():
    with pytest.raises(UserError, match="no text"):
        tk.fit_and_encode(["", ""], TokenizerConfig())


# --------------------------------------------------------------------------- sentencepiece
_SPM_WORDS = ("the a one some every small large red green quick lazy old new happy cat dog bird "
              "house river tree city mountain runs jumps sleeps sings walks sees finds likes "
              "quickly slowly today tomorrow near over under with without and but").split()


def _spm_corpus(n=3000, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ws = [rng.choice(_SPM_WORDS) for _ in range(rng.randint(4, 12))]
        ws[0] = ws[0].capitalize()
        out.append(" ".join(ws) + rng.choice([".", "!", "?", ","]))
    return out


@pytest.fixture(scope="module")
def spm_num():
    return fit_numericalizer(_spm_corpus(), TokenizerConfig(name="spm", vocab_size=120))


def test_spm_specials_and_size(spm_num):
    assert isinstance(spm_num, SpmNumericalizer) and spm_num.kind == "spm"
    assert spm_num.itos[:9] == SPECIAL_TOKENS
    assert len(spm_num) == 120 and spm_num.state()["vocab_size"] == 120
    assert spm_num.stoi["xxmaj"] == 8


def test_spm_roundtrip(spm_num):
    for x in ["The happy dog runs over the river.", "Some cat sings, but every bird walks!",
              "first line here\nsecond line there"]:
        ids = spm_num.encode(x)
        assert ids.dtype == np.int32 and ids[0] == BOS_ID
        assert spm_num.decode(ids) == x
    assert spm_num.decode(spm_num.encode("the cat")[1:]) == "the cat"


def test_spm_state_roundtrip(spm_num):
    st = spm_num.state()
    _walk_plain(st)
    assert isinstance(st["model_proto"], bytes)
    m = numericalizer_from_state(_torch_roundtrip(st))
    x = "A lazy red bird sleeps under the old tree."
    assert m.encode(x).tolist() == spm_num.encode(x).tolist()
    assert m.itos == spm_num.itos and m.identity() == spm_num.identity()


def test_spm_encode_many_threads(spm_num, monkeypatch):
    """encode_many on sentencepiece's threads gives, text by text, what encode gives: BOS and the ids,
    a text with a newline in one piece, an empty text as BOS alone."""
    texts = _spm_corpus(200, seed=3) + ["a line\nanother line", ""]
    one_by_one = [spm_num.encode(x) for x in texts]
    assert sum(len(a) for a in one_by_one) > 2 * len(texts) and one_by_one[-1].tolist() == [BOS_ID]
    threads = []

    class SpySp:  # sentencepiece's processor, recording each batch call's thread count
        def __init__(self, sp):
            self.sp = sp

        def __getattr__(self, name):
            return getattr(self.sp, name)

        def encode(self, x, **k):
            if k.get("num_threads"):
                threads.append(k["num_threads"])
            return self.sp.encode(x, **k)

    monkeypatch.setattr(pool, "PARALLEL_MIN_CHARS", 0)
    monkeypatch.setattr(spm_num, "sp", SpySp(spm_num.sp))
    serial, par = spm_num.encode_many(texts), spm_num.encode_many(texts, workers=2)
    for out in (serial, par):
        assert len(out) == len(texts)
        assert all(a.dtype == np.int32 and np.array_equal(a, b) for a, b in zip(out, one_by_one))
    if pool.n_workers(2) > 1:
        # the serial call used no threads, the parallel one a 2-thread batch per chunk of the texts
        assert len(threads) == len(pool.chunks(texts, 1)) and set(threads) == {2}


def test_spm_vocab_too_large_shrinks():
    texts = _spm_corpus(300, seed=1)
    n = fit_numericalizer(texts, TokenizerConfig(name="spm", vocab_size=5000, model_type="bpe"))
    st = n.state()
    assert 9 < st["vocab_size"] < 5000 and st["requested_vocab_size"] == 5000
    assert len(n) == st["vocab_size"] and n.itos[:9] == SPECIAL_TOKENS
    x = "The quick dog sees a city."
    assert n.decode(n.encode(x)) == x


def test_spm_bad_model_type():
    with pytest.raises(UserError):
        fit_numericalizer(["a b c"], TokenizerConfig(name="spm", model_type="word"))


# --------------------------------------------------------------------------- embeddings
def test_map_embeddings_known_values():
    old_itos = ["xxunk", "xxpad", "cat", "dog"]
    old = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]])
    new_itos = ["xxunk", "xxpad", "dog", "bird", "cat", "fish"]
    new, found = map_embeddings(old, old_itos, new_itos)
    assert found == 4
    assert new.shape == (6, 2)
    mean = torch.tensor([3.0, 4.0])
    expected = torch.stack([old[0], old[1], old[3], mean, old[2], mean])
    assert torch.equal(new, expected)
    new[0, 0] = 99.0  # a copy: the old matrix is untouched
    assert old[0, 0] == 0.0


def test_map_bias_known_values():
    old_itos = ["a", "b", "c"]
    old = torch.tensor([1.0, 2.0, 6.0])
    new, found = map_bias(old, old_itos, ["c", "z", "a"])
    assert found == 2
    assert torch.equal(new, torch.tensor([6.0, 3.0, 1.0]))


def test_map_embeddings_shape_mismatch():
    with pytest.raises(ValueError):
        map_embeddings(torch.zeros(3, 2), ["a", "b"], ["a"])


class _MadeOnDemand(Sequence):
    """n texts of ~`length` characters made when indexed, so that only what the code under test
    keeps shows in tracemalloc (a list of them would itself be the corpus)."""

    def __init__(self, n, length=2000):
        self.n, self.length = n, length

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        rng = random.Random(i)
        words = " ".join(rng.choice(_SPM_WORDS) for _ in range(self.length // 6))
        return f"Line {i} one. {words}\nline {i} two\n\n"


def test_spm_trains_on_every_line_within_the_budget():
    texts = ["A b.\n\n  c d  ", "", "x " * 3000 + ". " + "y" * 9000]  # a line past 8000 characters
    lines = spm_mod._spm_training_sentences(texts, 100, 10**6)
    assert lines == ["A b.", "c d", "x " * 3000 + ".", "y" * 8000, "y" * 1000]
    assert lines == list(spm_mod._spm_sentences(texts))


@pytest.mark.parametrize("max_sentences,max_chars", [(50, 0), (0, 20_000), (500, 20_000)])
def test_spm_samples_past_either_budget(max_sentences, max_chars):
    texts = _MadeOnDemand(200, 300)  # 400 lines, ~60k characters
    every = list(spm_mod._spm_sentences(texts))
    lines = spm_mod._spm_training_sentences(texts, max_sentences, max_chars)
    assert lines == spm_mod._spm_training_sentences(texts, max_sentences, max_chars)  # the same sample
    assert lines != spm_mod._spm_training_sentences(texts, max_sentences, max_chars, seed=1)
    position = {line: i for i, line in enumerate(every)}
    assert [position[x] for x in lines] == sorted(position[x] for x in lines)  # corpus order, no repeats
    if max_sentences:
        assert len(lines) <= max_sentences
    if max_chars:
        assert 0.7 * max_chars < sum(map(len, lines)) < 1.3 * max_chars
    if max_sentences == 50:
        assert len(lines) == 50


def test_spm_training_holds_its_budget_not_the_corpus():
    import tracemalloc

    texts = _MadeOnDemand(3000)  # ~6M characters
    tracemalloc.start()
    try:
        lines = spm_mod._spm_training_sentences(texts, 0, 300_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 200_000 < sum(map(len, lines)) < 400_000
    assert peak < 3_000_000, peak  # holding every line would take over 6 MB


@pytest.mark.parametrize("knob", ["max_sentences", "max_chars"])
def test_spm_negative_budget_is_a_user_error(knob):
    with pytest.raises(UserError, match=f"tokenizer.{knob}=-5 is negative"):
        fit_numericalizer(_spm_corpus(50), TokenizerConfig(name="spm", vocab_size=120, **{knob: -5}))
