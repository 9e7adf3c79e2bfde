"""`ulmfit generate`: the sampling functions, the generation loop, detokenization and the CLI."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from conftest import ulmfit
from ulmfit_cli.checkpoints import load_checkpoint, save_checkpoint
from ulmfit_cli.cli import main as cli_main
from ulmfit_cli.commands.generate import BANNED, newest_lm_run
from ulmfit_cli.stages.model_io import load_model
from ulmfit_cli.data.tokenizers import numericalizer_from_state, word_detokenize, word_tokenize
from ulmfit_cli.models.sampling import (apply_temperature, generate, mask_ids, next_token, top_k_filter,
                                        top_p_filter)

PROMPT = "The film was"  # all three words are in the embedded sample's vocabulary


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> Path:
    """One tiny fwd+bwd pretrain run on the embedded sample (a few seconds)."""
    cwd = tmp_path_factory.mktemp("gen")
    ulmfit("pretrain", "experiment=quickstart", "progress=none", "train.epochs=1", "dataset.max_docs=200",
           "train.max_steps_per_epoch=5", "bidirectional=both", "threads=1", cwd=cwd)
    (run,) = (cwd / "outputs" / "pretrain").iterdir()
    return run


@pytest.fixture(scope="module")
def fwd_lm(lm_run):
    ckpt = load_checkpoint(lm_run / "checkpoints" / "fwd.pt")
    numer = numericalizer_from_state(ckpt["numericalizer"])
    return load_model(ckpt), numer


def gen_cli(capsys, *args: str) -> tuple[int, str, str]:
    """`ulmfit generate ARGS` in-process (same dispatcher as the console script)."""
    rc = cli_main(["generate", *args])
    out, err = capsys.readouterr()
    return rc, out, err


# --------------------------------------------------------------------------- sampling functions
def test_top_k_keeps_exactly_k_even_with_ties():
    logits = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.5, 2.0]])
    for k in (1, 2, 4):
        kept = torch.isfinite(top_k_filter(logits, k))
        assert int(kept.sum()) == k
        assert set(kept[0].nonzero().flatten().tolist()) <= ({1, 2, 3} if k <= 3 else {1, 2, 3, 5})  # ties: any
    assert torch.equal(top_k_filter(logits, 0), logits) and torch.equal(top_k_filter(logits, 99), logits)
    assert torch.isfinite(top_k_filter(logits, 4))[0].tolist() == [False, True, True, True, False, True]


def test_top_p_keeps_the_smallest_set_with_enough_mass():
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])  # ranked: 1 (0.5), 3 (0.3), 2 (0.15), 0 (0.05)
    logits = probs.log().unsqueeze(0)

    def kept(p):
        return set(torch.isfinite(top_p_filter(logits, p))[0].nonzero().flatten().tolist())

    assert kept(0.1) == {1} and kept(0.5) == {1}
    assert kept(0.51) == {1, 3} and kept(0.8) == {1, 3}
    assert kept(0.81) == {1, 2, 3} and kept(0.95) == {1, 2, 3}
    assert kept(0.96) == {0, 1, 2, 3} and kept(1.0) == {0, 1, 2, 3}
    # the kept logits are untouched, so the renormalised distribution is the truncated one
    p = top_p_filter(logits, 0.8).softmax(-1)[0]
    assert torch.allclose(p, torch.tensor([0.0, 0.5 / 0.8, 0.0, 0.3 / 0.8]))


def test_temperature_towards_zero_is_argmax_and_above_one_flattens():
    logits = torch.tensor([[0.1, 2.0, 1.9, -1.0]])
    sharp = apply_temperature(logits, 1e-3).softmax(-1)
    assert sharp[0, 1] > 0.999 and sharp.argmax().item() == 1
    entropy = lambda t: float(-(apply_temperature(logits, t).softmax(-1) * apply_temperature(logits, t).log_softmax(-1)).sum())
    assert entropy(0.5) < entropy(1.0) < entropy(2.0) < math.log(4)
    assert torch.equal(apply_temperature(logits, 1.0), logits)
    assert next_token(logits, temperature=0).tolist() == [1]
    with pytest.raises(ValueError):
        apply_temperature(logits, 0)


def test_banned_ids_are_never_drawn():
    logits = torch.tensor([[5.0, 4.0, 0.0, -1.0]]).repeat(200, 1)
    g = torch.Generator().manual_seed(0)
    drawn = next_token(logits, banned=[0, 1], generator=g)
    assert not set(drawn.tolist()) & {0, 1}
    assert torch.isinf(mask_ids(logits[:1], [0, 99]))[0].tolist() == [True, False, False, False]


# --------------------------------------------------------------------------- generation loop
def test_generate_exact_length_batch_and_no_special_tokens(fwd_lm):
    model, numer = fwd_lm
    ids = torch.tensor([numer.encode(PROMPT).tolist()] * 3)
    out = generate(model, ids, 17, banned=BANNED, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 17) and out.dtype == torch.long
    assert not set(out.flatten().tolist()) & set(BANNED)
    assert not model.training and model.hidden is None  # eval mode kept, carried state cleared


def test_top_k_1_is_greedy_and_matches_a_full_recompute(fwd_lm):
    """top_k=1 == temperature=0 == argmax of the model re-run on the whole sequence each step
    (which also checks that the carried hidden state is the right one)."""
    model, numer = fwd_lm
    ids = torch.tensor([numer.encode(PROMPT).tolist()])
    topk1 = generate(model, ids, 12, top_k=1, banned=BANNED, generator=torch.Generator().manual_seed(1))
    greedy = generate(model, ids, 12, temperature=0, banned=BANNED)
    assert torch.equal(topk1, greedy)
    seq = ids
    with torch.no_grad():
        for _ in range(12):
            model.reset()
            logits = mask_ids(model(seq)[0][:, -1], BANNED)
            seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], 1)
    model.reset()
    assert torch.equal(seq[:, ids.size(1):], greedy)


def test_generate_restores_training_mode(fwd_lm):
    model, numer = fwd_lm
    model.train()
    try:
        generate(model, torch.tensor([[2, 10]]), 2)
        assert model.training
    finally:
        model.eval()
    with pytest.raises(ValueError):
        generate(model, torch.tensor([[2]]), 0)


# --------------------------------------------------------------------------- detokenization
@pytest.mark.parametrize("text, expected", [
    ("The U.S. movie was GREAT !!!", "The U.S. movie was GREAT!!!"),  # the tokenizer keeps no spaces
    ("The U.S. movie was GREAT!!!!", "The U.S. movie was GREAT!!!!"),  # xxrep 4 !
    ("I don't like it, it's sooooo bad.", "I don't like it, it's sooooo bad."),  # xxrep glued back
    ('He said "hello" (twice) for $5.', 'He said "hello" (twice) for $5.'),
    ('No no no no way. "The END"', 'No no no no way. "The END"'),  # xxwrep, paired quotes
    ("Mr. Smith paid 1,000.5 dollars; I'm sure.\nNew line?", "Mr. Smith paid 1,000.5 dollars; I'm sure.\nNew line?"),
])
def test_word_detokenize_round_trips(text, expected):
    assert word_detokenize(word_tokenize(text)) == expected


def test_word_detokenize_drops_dangling_markers_and_padding():
    toks = ["xxbos", "xxpad", "xxmaj", "xxrep", "great", "xxup", "xxwrep", "x", "xxmaj", "film", "xxup"]
    assert word_detokenize(toks) == "great x Film"


# --------------------------------------------------------------------------- CLI
def test_cli_same_seed_same_text_other_seed_other_text(lm_run, capsys):
    base = [f"run={lm_run}", f"prompt={PROMPT}", "n_words=25"]
    rc1, a, _ = gen_cli(capsys, *base, "seed=3")
    rc2, b, _ = gen_cli(capsys, *base, "seed=3")
    rc3, c, _ = gen_cli(capsys, *base, "seed=4", "top_k=50", "top_p=0.95", "temperature=0.8")
    assert rc1 == rc2 == rc3 == 0
    assert a == b and a != c
    assert a.startswith(PROMPT) and len(a.split()) > 3


def test_cli_n_samples_and_jsonl_out(lm_run, tmp_path, capsys):
    out = tmp_path / "samples.jsonl"
    args = [f"run={lm_run}", f"prompt={PROMPT}", "n_words=8", "n_samples=3", "seed=0", f"out={out}"]
    rc, printed, _ = gen_cli(capsys, *args)
    assert rc == 0 and printed.count("-- sample ") == 3
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["sample"] for r in rows] == [0, 1, 2]
    assert all(r["text"].startswith(PROMPT) and r["text"] in printed for r in rows)
    assert len({r["text"] for r in rows}) > 1  # a batch of independent samples
    rc, _, err = gen_cli(capsys, *args)
    assert rc == 2 and "exists" in err and "overwrite=true" in err
    assert gen_cli(capsys, *args, "overwrite=true")[0] == 0


def test_cli_backward_model_writes_before_the_prompt(lm_run, capsys):
    rc, out, _ = gen_cli(capsys, f"run={lm_run}", f"prompt={PROMPT}", "n_words=10", "seed=0", "direction=bwd")
    assert rc == 0
    text = out.strip()
    assert text.endswith(PROMPT) and len(text) > len(PROMPT) + 5


def test_run_defaults_to_newest_finetune_lm_then_pretrain(lm_run, tmp_path, capsys):
    root = tmp_path / "outputs"
    shutil.copytree(lm_run, root / "pretrain" / "a")
    assert newest_lm_run(str(root)) == root / "pretrain" / "a"
    shutil.copytree(lm_run, root / "finetune-lm" / "b")
    assert newest_lm_run(str(root)) == root / "finetune-lm" / "b"
    rc, out, _ = gen_cli(capsys, f"outputs_root={root}", f"prompt={PROMPT}", "n_words=3", "seed=0")
    assert rc == 0 and out.startswith(PROMPT)


def test_cli_errors_exit_2_with_the_fix(lm_run, tmp_path, capsys):
    clf = tmp_path / "clf_run"
    save_checkpoint(clf / "checkpoints" / "fwd.pt", {"kind": "clf", "stage": "train-clf", "model": {}})
    fwd_only = tmp_path / "fwd_only"
    (fwd_only / "checkpoints").mkdir(parents=True)
    shutil.copy(lm_run / "checkpoints" / "fwd.pt", fwd_only / "checkpoints" / "fwd.pt")
    cases = [
        ([f"run={clf}"], ["train-clf checkpoint", "not a language model", "pretrain or finetune-lm"]),
        ([f"run={tmp_path}"], ["no language-model checkpoint", "run="]),
        ([f"run={fwd_only}", "direction=bwd"], ["no bwd model", "direction=fwd"]),
        ([f"run={lm_run}", "n_words=0"], ["n_words=0", "n_words=1 or more"]),
        ([f"run={lm_run}", "top_p=1.5"], ["top_p=1.5", "(0, 1]"]),
        ([f"run={lm_run}", "top_p=0"], ["top_p=0.0", "top_p=0.9"]),
        ([f"outputs_root={tmp_path / 'none'}"], ["no finished finetune-lm or pretrain run", "run="]),
        ([f"run={lm_run}", "n_words=many"], ["Bad argument"]),
    ]
    for args, needles in cases:
        rc, out, err = gen_cli(capsys, *args)
        assert rc == 2, args
        assert all(n in err for n in needles), (args, err)
        assert "Traceback" not in err


def test_console_script_error_and_help(tmp_path):
    proc = ulmfit("generate", "n_words=0", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "n_words=0" in proc.stderr and "Traceback" not in proc.stderr
    assert "generate" in ulmfit("--help", cwd=tmp_path).stdout


def test_a_loaded_model_holds_the_checkpoints_tensors_and_gives_what_a_copy_gives(lm_run):
    """load_model hands the checkpoint's tensors to the model (no second copy of the weights beside
    it) and the model computes what one loaded by copying computes; a checkpoint in another dtype
    is copied into the model's own."""
    ckpt = load_checkpoint(lm_run / "checkpoints" / "fwd.pt")
    model = load_model(ckpt)
    weights = dict(model.named_parameters())
    assert weights and all(p.data_ptr() == ckpt["model"][k].data_ptr() for k, p in weights.items())
    copied_ckpt = load_checkpoint(lm_run / "checkpoints" / "fwd.pt")
    copied = load_model({**copied_ckpt, "model": {k: v.to(torch.float64) for k, v in copied_ckpt["model"].items()}})
    assert all(p.dtype == torch.float32 for p in copied.parameters())
    ids = torch.randint(9, len(ckpt["numericalizer"]["itos"]), (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, again = model(ids), copied(ids)
    first = out[0] if isinstance(out, tuple) else out
    second = again[0] if isinstance(again, tuple) else again
    assert torch.allclose(first, second, atol=1e-5) and first.abs().sum() > 0
