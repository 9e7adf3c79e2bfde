"""`ulmfit download wt103`, `pretrained=wt103`: fastai's published WikiText-103 LM in one command.

Archives in the model zoo's layout (wt103-fwd.tgz: wt103-fwd/lstm_fwd.pth + itos_wt103.pkl, likewise
bwd), made here from a tiny AWD_LSTM in fastai 1's key layout (the published files' fastai release),
served from 127.0.0.1 by the test (test_download.FileServer); never the internet. The same download
with a real fastai model: tests/test_fastai_interop.py::test_download_wt103_of_a_real_fastai_model.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import FAST, assert_clean_error, ulmfit
from test_download import NO_INTERNET, FileServer, sha, tar_gz
from test_fastai_interop import V1_SPECIALS, fastai_keys_of_ulmfit, logits, randomize_, ulmfit_lm_from, words
from ulmfit_cli.checkpoints import load_checkpoint
from ulmfit_cli.commands import download as cmd
from ulmfit_cli.commands.pipeline import split_overrides
from ulmfit_cli.config import ModelConfig
from ulmfit_cli.data import download_registry as dlreg
from ulmfit_cli.errors import UserError
from ulmfit_cli.models import build_lm
from ulmfit_cli.stages.sources import find_source_run

ITOS = V1_SPECIALS + words(41)  # fastai 1's special-token order, 50 tokens
SIZES = {"emb_size": 8, "hidden_size": 16, "n_layers": 3, "tie_weights": True}
ATOL = 1e-5
QUICK = [*FAST, "dataset.max_docs=40", "train.max_steps_per_epoch=2", "unfreeze=none"]


# --------------------------------------------------------------------------- archives in the zoo's layout


def reference_lm(seed: int):
    model = build_lm(OmegaConf.merge(OmegaConf.structured(ModelConfig), SIZES), len(ITOS), 1)
    randomize_(model, seed)
    return model.eval()


def state_bytes(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


tgz = tar_gz  # the archive builder the corpora's download tests use


def zoo_archive(direction: str, weights: bytes, itos: list[str] | None = ITOS, folder: bool = True) -> bytes:
    """wt103-<direction>.tgz as fastai's untar_data unpacks it: one folder holding lstm_<dir>.pth and
    itos_wt103.pkl (folder=False: the two files at the top level, which fastai reads the same way)."""
    top = f"wt103-{direction}/" if folder else ""
    files = {f"{top}lstm_{direction}.pth": weights}
    if itos is not None:
        files[f"{top}itos_wt103.pkl"] = pickle.dumps(itos, protocol=2)
    return tgz(files)


@pytest.fixture(scope="module")
def references():
    return {"fwd": reference_lm(11), "bwd": reference_lm(12)}


@pytest.fixture(scope="module")
def archives(references):
    """The two archives: fastai 1 key layout (learn.save's {'model': ...}, a stale module.weight_hh_l0)."""
    return {d: zoo_archive(d, state_bytes({"model": fastai_keys_of_ulmfit(m, v1=True)})) for d, m in references.items()}


def entry(server: FileServer, payloads: dict[str, bytes], check: str = "head_md5") -> dict:
    """A registry entry as the built-in wt103 one, for the served files; check: the fastai-style check
    (size + first-MiB MD5, as the built-in entry) or their real sha256."""
    files = []
    for remote in dlreg.REGISTRY["wt103"].files:
        data = payloads[remote.into]
        server.files[remote.filename] = data
        files.append({"url": server.url(remote.filename), "size": len(data), "subdir": remote.subdir,
                      "into": remote.into, "expect": list(remote.expect),
                      "sha256": sha(data) if check == "sha256" else None,
                      "head_md5": hashlib.md5(data[: 1 << 20]).hexdigest() if check == "head_md5" else None})
    return {"wt103": {"kind": "fastai_lm", "description": "test", "files": files}}


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """$ULMFIT_DATA in tmp_path, no internet; `use(entry)` installs a registry (in-process and for
    the console script)."""
    for k, v in NO_INTERNET.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("ULMFIT_DOWNLOAD_MIRROR", raising=False)
    monkeypatch.setenv("ULMFIT_DATA", str(tmp_path / "data"))
    values = {**NO_INTERNET, "ULMFIT_DATA": str(tmp_path / "data")}

    def use(registry: dict) -> dict:
        path = tmp_path / "registry.json"
        path.write_text(json.dumps(registry), encoding="utf-8")
        monkeypatch.setenv("ULMFIT_DOWNLOAD_REGISTRY", str(path))
        values["ULMFIT_DOWNLOAD_REGISTRY"] = str(path)
        return values

    monkeypatch.delenv("ULMFIT_DOWNLOAD_REGISTRY", raising=False)
    use.values = values
    return use


def download(*argv: str) -> int:
    return cmd.main(["wt103", "--retries", "0", *argv])


def contents(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# --------------------------------------------------------------------------- the route, end to end


@pytest.mark.integration
def test_download_imports_then_finetune_lm_starts_from_it(server, env, archives, references, tmp_path, capsys):
    values = env(entry(server, archives))
    data = tmp_path / "data"
    proc = ulmfit("download", "wt103", cwd=tmp_path, env=values)
    run = data / "wt103" / "run"
    out, err = proc.stdout, " ".join(proc.stderr.split())
    assert f"wt103: ready in {data / 'wt103'} (sizes and first-MiB MD5s verified; no SHA-256 is published)." in out
    assert "MD5 of the first MiB match the publisher's record" in err and sha(archives["fwd"]) in err
    assert f"imported fastai AWD_LSTM (fwd, bwd; vocab 50, emb 8, hidden 16, 3 layers, tied decoder) into {run}" in out
    assert "next: ulmfit finetune-lm pretrained=wt103 bidirectional=both dataset=<your dataset>" in out
    assert sorted(p.name for p in data.iterdir()) == ["wt103"]  # no .partial, no temp folders
    assert contents(data / "wt103" / "fwd") == ["itos_wt103.pkl", "lstm_fwd.pth"]
    assert contents(data / "wt103" / "bwd") == ["itos_wt103.pkl", "lstm_bwd.pth"]
    marker = json.loads((data / "wt103" / dlreg.MARKER).read_text())
    assert [(f["check"], f["sha256"]) for f in marker["files"]] == [("size+head_md5", sha(archives[d])) for d in ("fwd", "bwd")]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stage"] == "pretrain" and set(summary["results"]) == {"fwd", "bwd"}
    assert summary["fastai_import"]["files"]["bwd_weights"]["path"] == str(data / "wt103" / "bwd" / "lstm_bwd.pth")
    ids = torch.randint(0, len(ITOS), (2, 13), generator=torch.Generator().manual_seed(0))
    for d, ref in references.items():  # the imported LMs are fastai's, token for token
        ours, itos = ulmfit_lm_from(run, d)
        to_new = torch.tensor([itos.index(t) for t in ITOS])
        assert (logits(ours, to_new[ids])[..., to_new] - logits(ref, ids)).abs().max().item() <= ATOL

    requests = len(server.requests)
    assert download() == 0
    assert f"already downloaded and imported: {run} (pretrained=wt103); nothing to do." in capsys.readouterr().out
    assert len(server.requests) == requests

    # stage 2 from it, both directions, no pretraining
    ulmfit("finetune-lm", *QUICK, "pretrained=wt103", "bidirectional=both", cwd=tmp_path, env=values)
    ft = next((tmp_path / "outputs" / "finetune-lm").iterdir())
    assert json.loads((ft / "summary.json").read_text())["started_from"] == str(run)
    for d in ("fwd", "bwd"):
        assert load_checkpoint(ft / "checkpoints" / f"{d}.pt")["model_config"]["emb_size"] == 8


@pytest.mark.integration
def test_pipeline_skip_pretrain_pretrained_wt103(server, env, archives, tmp_path, capsys):
    """`ulmfit pipeline skip=pretrain pretrained=wt103 ...`: finetune-lm starts from the download, and
    train-clf (which has no pretrained= key) from that finetune-lm run."""
    values = env(entry(server, archives))
    early = ulmfit("finetune-lm", *QUICK, "pretrained=wt103", cwd=tmp_path, env=values, check=False)
    assert_clean_error(early, "pretrained=wt103: the published wt103 model is not downloaded", "ulmfit download wt103")
    assert early.returncode == 2
    shutil.rmtree(tmp_path / "outputs", ignore_errors=True)
    assert download() == 0
    run = tmp_path / "data" / "wt103" / "run"
    pipe = ulmfit("pipeline", "skip=pretrain", "pretrained=wt103", *QUICK, "bidirectional=both",
                  "train-clf/bidirectional=fwd", cwd=tmp_path, env=values)
    assert "== finetune-lm: " in pipe.stdout and "pretrained=wt103" in pipe.stdout
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["finetune-lm", "train-clf"]
    ft = next((tmp_path / "outputs" / "finetune-lm").iterdir())
    assert json.loads((ft / "summary.json").read_text())["started_from"] == str(run)
    clf = next((tmp_path / "outputs" / "train-clf").iterdir())
    assert (tmp_path / json.loads((clf / "summary.json").read_text())["started_from"]).resolve() == ft.resolve()


def test_pipeline_gives_pretrained_and_lm_to_their_stage_only():
    per_stage, skip = split_overrides(["skip=pretrain", "pretrained=wt103", "seed=3", "train-clf/lm=x", "+lm=y"])
    assert skip == {"pretrain"}
    assert per_stage["finetune-lm"] == ["pretrained=wt103", "seed=3"]
    assert per_stage["train-clf"] == ["seed=3", "lm=x", "+lm=y"]
    assert per_stage["pretrain"] == ["seed=3"]


def test_pretrained_wt103_before_the_download_names_the_command(env, tmp_path):
    with pytest.raises(UserError) as e:
        find_source_run("wt103", "finetune-lm", "outputs", ["fwd", "bwd"], "pretrained")
    assert "pretrained=wt103: the published wt103 model is not downloaded here" in str(e.value)
    assert "Run `ulmfit download wt103` first" in str(e.value) and str(tmp_path / "data" / "wt103" / "run") in str(e.value)
    with pytest.raises(UserError, match=r"Run `ulmfit download wt103 --dest .*elsewhere` first"):
        find_source_run("wt103", "finetune-lm", "outputs", ["fwd"], "pretrained", str(tmp_path / "elsewhere"))


def test_pipeline_with_pretrained_skips_pretrain(monkeypatch, capsys):
    """pretrained= implies skip=pretrain (a pretrain run would go unused); the stage gets it."""
    from ulmfit_cli.commands import pipeline

    calls = []
    monkeypatch.setattr(pipeline.subprocess, "call", lambda cmd: calls.append(cmd[3:]) or 2)
    assert pipeline.main(["pretrained=wt103", "dataset=imdb", "seed=1"]) == 2  # stops at the failed stage
    assert "pretrain is skipped" in capsys.readouterr().out
    assert [c[0] for c in calls] == ["finetune-lm"] and calls[0][1:4] == ["pretrained=wt103", "dataset=imdb", "seed=1"]


def test_a_run_missing_a_direction_is_refused(env, tmp_path):
    run = tmp_path / "data" / "wt103" / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "fwd.pt").write_bytes(b"")
    (run / "summary.json").write_text("{}")
    assert find_source_run("wt103", "finetune-lm", "outputs", ["fwd"], "pretrained") == run.resolve()
    with pytest.raises(UserError, match=r"has no checkpoint checkpoints/bwd.pt.*ulmfit download wt103 --force"):
        find_source_run("wt103", "finetune-lm", "outputs", ["fwd", "bwd"], "pretrained")


# --------------------------------------------------------------------------- the download's own guarantees


def test_list_says_how_wt103_is_verified(capsys):
    assert cmd.main(["--list"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "wt103 200.5 MiB size + first-MiB md5 verified (no published sha256)" in out
    assert "https://s3.amazonaws.com/fast-ai-modelzoo/wt103-fwd.tgz" in out and "wt103-bwd.tgz" in out
    assert "fastai/datasets.py _checks" in out and "fastai publishes no SHA-256" in out
    assert "each archive must hold *.pth and *.pkl" in out and "one AWD_LSTM" in out
    assert "kept in wt103/.ulmfit-download.json" in out


def test_built_in_entry_rejects_other_files(server, env, archives, tmp_path, monkeypatch):
    """The real entry (fastai 1's size and first-MiB MD5) through a mirror serving other archives."""
    for d in ("fwd", "bwd"):
        server.files[f"wt103-{d}.tgz"] = archives[d]
    monkeypatch.setenv("ULMFIT_DOWNLOAD_MIRROR", server.base)
    with pytest.raises(UserError) as e:
        download()
    msg = str(e.value)
    assert f"Size mismatch for wt103-fwd.tgz (downloaded from {server.url('wt103-fwd.tgz')}" in msg
    assert "expected 105,067,061 bytes" in msg and "The file was deleted; nothing was unpacked" in msg
    assert contents(tmp_path / "data") == []


def test_first_mib_md5_mismatch_is_rejected(server, env, archives, tmp_path):
    reg = entry(server, archives)
    reg["wt103"]["files"][1]["head_md5"] = "0" * 32
    env(reg)
    with pytest.raises(UserError, match=r"First-MiB MD5 \(fastai's check\) mismatch for wt103-bwd.tgz.*expected 0{32}"):
        download()
    assert not (tmp_path / "data" / "wt103").exists()
    assert contents(tmp_path / "data") == [".partial", ".partial/wt103-fwd.tgz"]  # the good one is kept, verified


def test_interrupted_download_resumes_then_imports(server, env, archives, tmp_path, capsys):
    env(entry(server, archives, check="sha256"))
    cut = len(archives["bwd"]) // 2
    server.cut["wt103-bwd.tgz"] = cut
    with pytest.raises(UserError, match=rf"closed after {cut:,} of .* kept in .*wt103-bwd.tgz.part; running the command "
                                        r"again resumes.*ulmfit import-fastai"):
        download()
    assert not (tmp_path / "data" / "wt103").exists()
    assert download() == 0
    assert server.requests[-1] == ("wt103-bwd.tgz", f"bytes={cut}-")
    assert [r for r in server.requests if r[0] == "wt103-fwd.tgz"] == [("wt103-fwd.tgz", None)]  # verified, kept
    assert "checksums verified" in capsys.readouterr().out
    assert (tmp_path / "data" / "wt103" / "run" / "checkpoints" / "bwd.pt").is_file()


def test_archive_without_the_expected_files_names_what_is_missing(server, env, archives, references, tmp_path):
    no_vocab = zoo_archive("bwd", state_bytes(fastai_keys_of_ulmfit(references["bwd"])), itos=None)
    env(entry(server, {"fwd": archives["fwd"], "bwd": no_vocab}))
    with pytest.raises(UserError) as e:
        download()
    msg = str(e.value)
    assert "wt103-bwd.tgz does not hold what it should: no '*.pkl' in it (it holds lstm_bwd.pth)" in msg
    assert "It was deleted; nothing was installed" in msg
    # nothing installed; the other archive, verified, stays to be reused by the next call
    assert contents(tmp_path / "data") == [".partial", ".partial/wt103-fwd.tgz"]


def test_files_the_import_refuses_are_deleted(server, env, archives, tmp_path):
    odd = zoo_archive("fwd", state_bytes({"0.encoder.weight": torch.zeros(len(ITOS), 8), "1.weight": torch.zeros(3)}))
    env(entry(server, {"fwd": odd, "bwd": archives["bwd"]}))
    with pytest.raises(UserError) as e:
        download()
    msg = " ".join(str(e.value).split())
    assert "The downloaded wt103 model cannot be imported: --weights" in msg and "lstm_fwd.pth is not a fastai AWD_LSTM" in msg
    assert "Its files were deleted" in msg and "Run `ulmfit download wt103` again to fetch them anew" in msg
    assert contents(tmp_path / "data") == []


def test_directions_with_different_vocabularies_are_refused(server, env, archives, references, tmp_path):
    other = list(reversed(ITOS))
    bwd = zoo_archive("bwd", state_bytes(fastai_keys_of_ulmfit(references["bwd"])), itos=other)
    env(entry(server, {"fwd": archives["fwd"], "bwd": bwd}))
    with pytest.raises(UserError, match="is another vocabulary than .* both directions must share one"):
        download()
    assert contents(tmp_path / "data") == []


def test_flat_archives_and_a_removed_run(server, env, references, tmp_path, capsys):
    """Archives without the top folder unpack the same (as fastai reads them); a run that is gone is
    imported again from the kept files, without a request."""
    flat = {d: zoo_archive(d, state_bytes(fastai_keys_of_ulmfit(m, v1=True)), folder=False) for d, m in references.items()}
    env(entry(server, flat))
    assert download() == 0
    run = tmp_path / "data" / "wt103" / "run"
    first = load_checkpoint(run / "checkpoints" / "fwd.pt")["model"]["encoder.encoder.weight"]
    requests = list(server.requests)
    shutil.rmtree(run)
    capsys.readouterr()
    assert download() == 0
    assert server.requests == requests
    assert "imported fastai AWD_LSTM" in capsys.readouterr().out
    assert torch.equal(load_checkpoint(run / "checkpoints" / "fwd.pt")["model"]["encoder.encoder.weight"], first)
    # --dest elsewhere: the next command names data_root
    assert cmd.main(["wt103", "--dest", str(tmp_path / "other")]) == 0
    assert f"pretrained=wt103 data_root={tmp_path / 'other'} bidirectional=both" in capsys.readouterr().out


def test_registry_json_fields_are_checked(tmp_path):
    reg = tmp_path / "r.json"
    for bad, words_ in [({"head_md5": "xyz", "size": 3}, "not 32 hex digits"), ({"head_md5": "0" * 32}, "needs the file's"),
                        ({"expect": "*.pth"}, "not a list of glob patterns")]:
        reg.write_text(json.dumps({"m": {"files": [{"url": "http://127.0.0.1:1/m.tgz", **bad}]}}))
        with pytest.raises(UserError, match=words_):
            dlreg.load_registry(reg)
    reg.write_text(json.dumps({"m": {"kind": "model", "files": [{"url": "http://127.0.0.1:1/m.tgz"}]}}))
    with pytest.raises(UserError, match="has kind 'model'"):
        dlreg.load_registry(reg)
    assert dataclasses.replace(dlreg.REGISTRY["wt103"].files[0]).check == "size+head_md5"
