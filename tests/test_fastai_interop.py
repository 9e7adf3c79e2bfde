"""`ulmfit import-fastai` / `export-fastai`: fastai's AWD_LSTM language model in and out.

The parity tests build a real fastai model and need fastai: run them in the venv made by
scripts/fastai_env.sh (`.venv-fastai/bin/python -m pytest tests/test_fastai_interop.py`); they
skip elsewhere. The safety and file-format tests need only ulmfit and run everywhere.
"""
from __future__ import annotations

import json
import os
import pickle
from collections import Counter
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import FAST, ulmfit
from ulmfit_cli.checkpoints import load_checkpoint
from ulmfit_cli.config import ModelConfig
from ulmfit_cli.data.tokenizers import SPECIAL_TOKENS
from ulmfit_cli.models import build_lm

FASTAI_SKIP = ("fastai is not installed in this venv; the fastai parity tests run in .venv-fastai "
               "(bash scripts/fastai_env.sh && .venv-fastai/bin/python -m pytest tests/test_fastai_interop.py)")
ATOL = 1e-5
# fastai 1's order of the special tokens (fastai 2 and ulmfit share the other one)
V1_SPECIALS = ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxmaj", "xxup", "xxrep", "xxwrep"]


# --------------------------------------------------------------------------- helpers
def ulmfit_lm_from(run_dir: Path, direction: str = "fwd"):
    ckpt = load_checkpoint(run_dir / "checkpoints" / f"{direction}.pt")
    assert ckpt["kind"] == "lm" and ckpt["stage"] == "pretrain"
    itos = ckpt["numericalizer"]["itos"]
    model = build_lm(OmegaConf.create(ckpt["model_config"]), len(itos), 1)
    model.load_state_dict(ckpt["model"])
    return model.eval(), itos


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    model.reset()
    with torch.no_grad():
        return model(ids)[0]


def randomize_(model, seed: int) -> None:
    """Weights of order 1 (fastai's init gives tiny logits; a real comparison needs big ones)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def fastai_keys_of_ulmfit(model, v1: bool = False) -> dict:
    """An ulmfit LM's weights under fastai's key names, written out by hand (independent of
    ulmfit_cli.models.fastai_compat). v1: fastai 1's layout, which also kept module.weight_hh_l0."""
    s = model.state_dict()
    emb = s["encoder.encoder.weight"]
    out = {"0.encoder.weight": emb, "0.encoder_dp.emb.weight": emb}
    for i in range(len(model.encoder.rnns)):
        q, p = f"encoder.rnns.{i}.", f"0.rnns.{i}."
        out[p + "weight_hh_l0_raw"] = s[q + "weight_hh_l0_raw"]
        if v1:
            out[p + "module.weight_hh_l0"] = torch.randn_like(s[q + "weight_hh_l0_raw"])  # a stale dropped copy
        out[p + "module.weight_ih_l0"] = s[q + "weight_ih_l0"]
        out[p + "module.bias_ih_l0"] = s[q + "bias_ih_l0"]
        out[p + "module.bias_hh_l0"] = s[q + "bias_hh_l0"]
    out["1.decoder.weight"] = emb
    out["1.decoder.bias"] = s["decoder.bias"]
    return out


def words(n: int) -> list[str]:
    return [f"word{i}" for i in range(n)]


def run_in_process(capsys, *argv: str) -> tuple[int, str]:
    """`ulmfit ARGV` in this process (quick, for the refusals): (exit code, stderr)."""
    from ulmfit_cli.cli import main

    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().err


def import_fastai(cwd: Path, weights: Path, vocab: Path, *extra: str, check: bool = True):
    return ulmfit("import-fastai", "--weights", str(weights), "--vocab", str(vocab), *extra, cwd=cwd, check=check)


# --------------------------------------------------------------------------- fastai parity
@pytest.fixture(scope="module")
def fa():
    pytest.importorskip("fastai", reason=FASTAI_SKIP)
    from fastai.learner import load_model, save_model
    from fastai.text.data import make_vocab
    from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_lm_config
    from fastai.text.models.core import get_language_model
    from fastcore.xtras import load_pickle, save_pickle

    class NS:
        pass

    ns = NS()
    ns.__dict__.update(AWD_LSTM=AWD_LSTM, config=awd_lstm_lm_config, get_language_model=get_language_model,
                       make_vocab=make_vocab, load_model=load_model, save_model=save_model,
                       load_pickle=load_pickle, save_pickle=save_pickle)
    return ns


def fastai_lm(fa, vocab_size: int, seed: int, n_layers: int = 3, **over):
    torch.manual_seed(seed)
    cfg = dict(fa.config, emb_sz=16, n_hid=24, n_layers=n_layers, **over)
    model = fa.get_language_model(fa.AWD_LSTM, vocab_size, config=cfg)
    randomize_(model, seed)
    return model.eval(), cfg


@pytest.fixture(scope="module")
def fastai_files(fa, tmp_path_factory):
    """fastai's own files: a vocab from make_vocab (fastai 2 order, padded with 'xxfake'
    duplicates to a multiple of 8) and fwd + bwd LMs saved as fastai saves them."""
    d = tmp_path_factory.mktemp("fastai")
    itos = fa.make_vocab(Counter({w: 100 - i for i, w in enumerate(words(41))}), min_freq=1)
    assert len(itos) == 56 and itos.count("xxfake") == 6
    fa.save_pickle(d / "itos.pkl", itos)
    fwd, cfg = fastai_lm(fa, len(itos), seed=1)
    bwd, _ = fastai_lm(fa, len(itos), seed=2)
    fa.save_model(d / "lstm_fwd.pth", fwd, None, with_opt=False)
    fa.save_model(d / "lstm_bwd.pth", bwd, None, with_opt=False)
    return d, itos, {"fwd": fwd, "bwd": bwd}, cfg


@pytest.fixture(scope="module")
def imported(fastai_files, tmp_path_factory):
    d, itos, models, _ = fastai_files
    cwd = tmp_path_factory.mktemp("imp")
    out = import_fastai(cwd, d / "lstm_fwd.pth", d / "itos.pkl", "--backward", str(d / "lstm_bwd.pth")).stdout
    runs = list((cwd / "outputs" / "pretrain").iterdir())
    assert len(runs) == 1 and runs[0].name.endswith("-fastai-import"), runs
    assert f"pretrained=outputs/pretrain/{runs[0].name}" in out
    return runs[0]


def test_import_gives_fastais_logits(fastai_files, imported):
    _, itos, models, _ = fastai_files
    ids = torch.randint(0, len(itos), (3, 17), generator=torch.Generator().manual_seed(0))
    for direction in ("fwd", "bwd"):
        model, new_itos = ulmfit_lm_from(imported, direction)
        # fastai 2's vocabulary already starts with ulmfit's specials: the ids do not move;
        # only the 'xxfake' padding duplicates get unique names
        assert len(new_itos) == len(itos)
        assert [t for t, u in zip(itos, new_itos) if t != u] == ["xxfake"] * 5
        ref, got = logits(models[direction], ids), logits(model, ids)
        assert got.shape == ref.shape == (3, 17, len(itos))
        diff = (got - ref).abs().max().item()
        print(f"import {direction}: max |logit difference| = {diff:.3g} (logits up to {ref.abs().max():.3g})")
        assert diff <= ATOL
        # the stateful hidden state carries over the same way (truncated BPTT)
        ids2 = torch.randint(0, len(itos), (3, 5))
        with torch.no_grad():
            assert torch.allclose(model(ids2)[0], models[direction](ids2)[0], atol=ATOL)


def test_import_writes_a_pretrain_run(imported):
    cfg = OmegaConf.load(imported / "config.yaml")
    assert cfg.stage == "pretrain"
    assert (cfg.model.emb_size, cfg.model.hidden_size, cfg.model.n_layers, cfg.model.tie_weights) == (16, 24, 3, True)
    assert list(cfg.bidirectional.directions) == ["fwd", "bwd"]
    summary = json.loads((imported / "summary.json").read_text())
    assert summary["stage"] == "pretrain" and summary["vocab_size"] == 56
    assert summary["fastai_import"]["duplicate_tokens_renamed"] == 5
    assert set(summary["results"]) == {"fwd", "bwd"}


def test_export_loads_into_fastai_strict(fa, fastai_files, imported, tmp_path):
    _, itos, models, cfg = fastai_files
    out = tmp_path / "export"
    ulmfit("export-fastai", f"run={imported}", "--out", str(out), cwd=tmp_path)
    conf = json.loads((out / "fastai_config.json").read_text())
    ids = torch.randint(0, len(itos), (2, 23), generator=torch.Generator().manual_seed(1))
    for direction in ("fwd", "bwd"):
        new_itos = fa.load_pickle(out / f"itos_{direction}.pkl")
        assert type(new_itos) is list and len(new_itos) == len(itos)
        model = fa.get_language_model(fa.AWD_LSTM, len(new_itos), config={**fa.config, **conf[direction]})
        # learn.load's own loader: torch.load(weights_only=True) then load_state_dict(strict=True)
        fa.load_model(out / f"lstm_{direction}.pth", model, None, with_opt=False, strict=True)
        assert model[1].decoder.weight is model[0].encoder.weight  # still tied
        # fastai's load_pretrained (language_model_learner(pretrained_fnames=...)) matches by order
        assert list(torch.load(out / f"lstm_{direction}.pth", weights_only=True)) == list(model.state_dict())
        diff = (logits(model, ids) - logits(models[direction], ids)).abs().max().item()
        print(f"export {direction}: max |logit difference| = {diff:.3g}")
        assert diff <= ATOL


def test_fastai1_vocab_order_and_untied_one_layer(fa, tmp_path):
    """fastai 1's special-token order (moved to ulmfit's), an untied decoder, one layer."""
    itos = V1_SPECIALS + words(31)
    model, _ = fastai_lm(fa, len(itos), seed=3, n_layers=1, tie_weights=False)
    torch.save(model.state_dict(), tmp_path / "lm.pth")
    with open(tmp_path / "itos.pkl", "wb") as f:
        pickle.dump(itos, f, protocol=2)
    import_fastai(tmp_path, tmp_path / "lm.pth", tmp_path / "itos.pkl", "--out", str(tmp_path / "run"))
    ours, new_itos = ulmfit_lm_from(tmp_path / "run")
    assert new_itos[:9] == SPECIAL_TOKENS and sorted(new_itos) == sorted(itos)
    assert ours.decoder.weight is not ours.encoder.encoder.weight
    to_new = torch.tensor([new_itos.index(t) for t in itos])
    ids = torch.randint(0, len(itos), (2, 11), generator=torch.Generator().manual_seed(2))
    ref = logits(model, ids)
    got = logits(ours, to_new[ids])[..., to_new]  # same tokens in, columns back in fastai's order
    assert (got - ref).abs().max().item() <= ATOL


def test_export_of_an_ulmfit_trained_run(fa, tmp_path):
    """A model trained by ulmfit itself (its own word vocabulary) runs in fastai unchanged."""
    ulmfit("pretrain", *FAST, "dataset.max_docs=60", "bidirectional=fwd", "train.max_steps_per_epoch=2", cwd=tmp_path)
    run = next((tmp_path / "outputs" / "pretrain").iterdir())
    ulmfit("export-fastai", f"run={run}", cwd=tmp_path)
    out = run / "fastai-export"
    ours, itos = ulmfit_lm_from(run)
    assert fa.load_pickle(out / "itos_fwd.pkl") == itos
    conf = json.loads((out / "fastai_config.json").read_text())["fwd"]
    model = fa.get_language_model(fa.AWD_LSTM, len(itos), config={**fa.config, **conf})
    fa.load_model(out / "lstm_fwd.pth", model, None, with_opt=False, strict=True)
    ids = torch.randint(0, len(itos), (2, 9), generator=torch.Generator().manual_seed(3))
    assert (logits(model, ids) - logits(ours, ids)).abs().max().item() <= ATOL
    again = ulmfit("export-fastai", f"run={run}", cwd=tmp_path, check=False)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_download_wt103_of_a_real_fastai_model(fa, tmp_path, monkeypatch, capsys):
    """`ulmfit download wt103` from a local server serving fastai's own AWD_LSTMs (fwd, bwd) and vocabulary,
    saved as fastai saves them and packed as the model zoo packs them (tests/test_wt103.py does the rest
    with a synthetic state dict): the run it imports gives fastai's logits, and the fastai files it keeps
    load into fastai as fastai's language_model_learner loads the zoo's."""
    from fastai.text.learner import clean_raw_keys, load_ignore_keys

    import test_wt103 as zoo
    from test_download import NO_INTERNET, FileServer
    from ulmfit_cli.commands import download

    itos = fa.make_vocab(Counter({w: 100 - i for i, w in enumerate(words(41))}), min_freq=1)
    models, payloads = {}, {}
    for d, seed in (("fwd", 21), ("bwd", 22)):
        torch.manual_seed(seed)
        cfg = dict(fa.config, emb_sz=8, n_hid=16, n_layers=3)
        models[d] = fa.get_language_model(fa.AWD_LSTM, len(itos), config=cfg)
        randomize_(models[d], seed)
        models[d].eval()
        fa.save_model(tmp_path / f"lstm_{d}.pth", models[d], None, with_opt=False)
        payloads[d] = zoo.zoo_archive(d, (tmp_path / f"lstm_{d}.pth").read_bytes(), itos=list(itos))
    server = FileServer()
    try:
        registry = tmp_path / "registry.json"
        registry.write_text(json.dumps(zoo.entry(server, payloads)))
        for k, v in {**NO_INTERNET, "ULMFIT_DOWNLOAD_REGISTRY": str(registry), "ULMFIT_DATA": str(tmp_path / "data")}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("ULMFIT_DOWNLOAD_MIRROR", raising=False)
        assert download.main(["wt103"]) == 0
    finally:
        server.close()
    assert "next: ulmfit finetune-lm pretrained=wt103 bidirectional=both" in capsys.readouterr().out
    root = tmp_path / "data" / "wt103"
    ids = torch.randint(0, len(itos), (3, 17), generator=torch.Generator().manual_seed(5))
    for d, ref in models.items():
        ours, new_itos = ulmfit_lm_from(root / "run", d)
        assert len(new_itos) == len(itos)  # fastai 2's order is ulmfit's: the ids do not move
        assert (logits(ours, ids) - logits(ref, ids)).abs().max().item() <= ATOL
        # fastai's way with the zoo's folder: the *.pth and *.pkl it finds there (language_model_learner)
        wgts_fname, vocab_fname = [list((root / d).glob(f"*.{ext}"))[0] for ext in ("pth", "pkl")]
        fresh = fa.get_language_model(fa.AWD_LSTM, len(itos), config=dict(fa.config, emb_sz=8, n_hid=16, n_layers=3))
        assert fa.load_pickle(vocab_fname) == itos
        load_ignore_keys(fresh, clean_raw_keys(torch.load(wgts_fname, map_location="cpu", weights_only=True)))
        assert (logits(fresh, ids) - logits(ref, ids)).abs().max().item() <= ATOL


# --------------------------------------------------------------------------- without fastai
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A fastai-1-layout LM file (v1 special order, stale module.weight_hh_l0, learn.save's
    {'model': ...} wrapper) made by hand from an ulmfit model, the reference."""
    d = tmp_path_factory.mktemp("synthetic")
    itos = V1_SPECIALS + words(40)
    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), {  # the schema's other keys (emb_init, kernels)
        "emb_size": 8, "hidden_size": 12, "n_layers": 2, "tie_weights": True, "output_p": 0.1,
        "hidden_p": 0.1, "input_p": 0.1, "embed_p": 0.1, "weight_p": 0.1, "drop_mult": 1.0})
    ref = build_lm(cfg, len(itos), 1)
    randomize_(ref, 5)
    torch.save({"model": fastai_keys_of_ulmfit(ref, v1=True)}, d / "lstm_fwd.pth")
    with open(d / "itos.pkl", "wb") as f:
        pickle.dump(itos, f)
    return d, itos, ref.eval()


def test_synthetic_fastai1_file_imports_exactly(synthetic, tmp_path):
    d, itos, ref = synthetic
    import_fastai(tmp_path, d / "lstm_fwd.pth", d / "itos.pkl", "--out", str(tmp_path / "run"))
    ours, new_itos = ulmfit_lm_from(tmp_path / "run")
    assert new_itos == SPECIAL_TOKENS + words(40)
    to_new = torch.tensor([new_itos.index(t) for t in itos])
    ids = torch.randint(0, len(itos), (2, 13), generator=torch.Generator().manual_seed(4))
    got = logits(ours, to_new[ids])[..., to_new]
    assert (got - logits(ref, ids)).abs().max().item() <= ATOL

    # and back out: fastai 2's keys, the raw hidden-to-hidden weights, rows in ulmfit's order
    ulmfit("export-fastai", f"run={tmp_path / 'run'}", cwd=tmp_path)
    exp = tmp_path / "run" / "fastai-export"
    state = torch.load(exp / "lstm_fwd.pth", weights_only=True)
    want = fastai_keys_of_ulmfit(ours)
    assert list(state) == list(want)
    for k in want:
        assert torch.equal(state[k], want[k]), k
    assert pickle.loads((exp / "itos_fwd.pkl").read_bytes()) == new_itos
    assert json.loads((exp / "fastai_config.json").read_text())["fwd"]["n_hid"] == 12


@pytest.mark.integration
def test_finetune_lm_and_train_clf_start_from_an_import(synthetic, tmp_path):
    d, _, _ = synthetic
    import_fastai(tmp_path, d / "lstm_fwd.pth", d / "itos.pkl")
    quick = [*FAST, "dataset.max_docs=60", "bidirectional=fwd", "train.max_steps_per_epoch=2"]
    ulmfit("finetune-lm", *quick, "pretrained=latest", cwd=tmp_path)
    run = next((tmp_path / "outputs" / "finetune-lm").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["started_from"].endswith("-fastai-import")
    assert load_checkpoint(run / "checkpoints" / "fwd.pt")["model_config"]["emb_size"] == 8
    # and the classifier stage builds on that (the imported sizes, not model=tiny's, carry on)
    ulmfit("train-clf", *quick, "lm=latest", "unfreeze=none", cwd=tmp_path)


class Boom:
    """Unpickling this runs `touch <marker>`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_vocab_pickle_is_refused_unrun(synthetic, tmp_path):
    d, _, _ = synthetic
    marker = tmp_path / "pwned"
    evil = tmp_path / "itos.pkl"
    evil.write_bytes(pickle.dumps(["xxunk", "xxpad", Boom(marker)]))
    assert b"system" in evil.read_bytes()
    r = import_fastai(tmp_path, d / "lstm_fwd.pth", evil, check=False)
    assert r.returncode == 2, r.stderr
    assert "refused" in r.stderr and "posix.system" in r.stderr and "Traceback" not in r.stderr
    assert not marker.exists()
    assert not (tmp_path / "outputs").exists()


def test_malicious_weights_are_refused_unrun(synthetic, tmp_path):
    d, _, _ = synthetic
    marker = tmp_path / "pwned"
    evil = tmp_path / "lstm_fwd.pth"
    torch.save({"model": {"0.encoder.weight": torch.zeros(2, 2)}, "x": Boom(marker)}, evil)
    r = import_fastai(tmp_path, evil, d / "itos.pkl", check=False)
    assert r.returncode == 2 and "refused unopened" in r.stderr and not marker.exists()


@pytest.mark.parametrize("obj, words_in_error", [
    ({"xxunk": 0}, "not a non-empty list"),
    (["xxunk", 3], "item 1 is a int"),
    ([], "not a non-empty list"),
])
def test_vocab_must_be_a_list_of_str(synthetic, tmp_path, capsys, obj, words_in_error):
    d, _, _ = synthetic
    (tmp_path / "v.pkl").write_bytes(pickle.dumps(obj))
    code, err = run_in_process(capsys, "import-fastai", f"weights={d / 'lstm_fwd.pth'}", f"vocab={tmp_path / 'v.pkl'}",
                               f"outputs_root={tmp_path}")
    assert code == 2 and words_in_error in err


def test_refusals(synthetic, tmp_path, capsys):
    d, itos, _ = synthetic
    w, v = f"--weights={d / 'lstm_fwd.pth'}", f"--vocab={d / 'itos.pkl'}"
    # a vocabulary of another size
    (tmp_path / "short.pkl").write_bytes(pickle.dumps(itos[:-1]))
    code, err = run_in_process(capsys, "import-fastai", w, "--vocab", str(tmp_path / "short.pkl"),
                               "--outputs-root", str(tmp_path))
    assert code == 2 and "49 embedding rows" in err
    # an existing, non-empty output directory is never written into
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    code, err = run_in_process(capsys, "import-fastai", w, v, "--out", str(tmp_path / "taken"))
    assert code == 2 and "already exists" in err
    assert os.listdir(tmp_path / "taken") == ["keep.txt"]
    # not a language model: a state dict with foreign keys
    torch.save({"0.encoder.weight": torch.zeros(49, 8), "1.weight": torch.zeros(3)}, tmp_path / "odd.pth")
    code, err = run_in_process(capsys, "import-fastai", f"--weights={tmp_path / 'odd.pth'}", v, "--out", str(tmp_path / "o"))
    assert code == 2 and "not a fastai AWD_LSTM language model" in err
    # a flag without its value; export from a directory that does not exist
    code, err = run_in_process(capsys, "import-fastai", w, "--vocab")
    assert code == 2 and "--vocab needs a value" in err
    code, err = run_in_process(capsys, "export-fastai", f"run={tmp_path / 'nope'}")
    assert code == 2 and "no such run directory" in err
    assert not (tmp_path / "pretrain").exists()
