"""`ulmfit download`: against a local HTTP server (Range support, cut connections), never the internet."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import socket
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rich.console import Console

from conftest import ulmfit
from ulmfit_cli.config import DatasetConfig
from ulmfit_cli.data import download as dl
from ulmfit_cli.data import download_registry as dlreg
from ulmfit_cli.data.readers import load_dataset
from ulmfit_cli.errors import UserError

# A proxy nobody listens on: a request for any host but 127.0.0.1 fails instead of going out.
NO_INTERNET = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
               "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
               "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- the local server


class FileServer:
    """Serves `files` (name -> bytes) on 127.0.0.1 with `Range: bytes=N-` support; records every
    request; `cut[name] = n` drops the connection after n body bytes (once); `stall[name] = n` sends n
    bytes and then nothing for a second (once); `no_range` ignores Range."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut: dict[str, int] = {}
        self.stall: dict[str, int] = {}
        self.no_range = False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                owner.requests.append((name, rng))
                body = owner.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                start = int(m.group(1)) if m and not owner.no_range else 0
                if start >= len(body) and start > 0:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if start:
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                stall = owner.stall.pop(name, None)
                if stall is not None:
                    self.wfile.write(payload[:stall])
                    self.wfile.flush()
                    time.sleep(1.0)
                    return
                cut = owner.cut.pop(name, None)
                if cut is None:
                    self.wfile.write(payload)
                    return
                self.wfile.write(payload[:cut])  # then hang up mid-body
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return self.base + name

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def only_localhost(monkeypatch):
    """In-process: any connection to a host other than 127.0.0.1 fails the test."""
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        assert address[0] in ("127.0.0.1", "localhost"), f"test tried to reach {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    for k, v in NO_INTERNET.items():
        monkeypatch.setenv(k, v)
    for k in ("ULMFIT_DOWNLOAD_MIRROR", "ULMFIT_DOWNLOAD_REGISTRY"):
        monkeypatch.delenv(k, raising=False)


def run(*args, env=None, cwd: Path, check=False):
    return ulmfit("download", *args, cwd=cwd, check=check, env={**NO_INTERNET, **(env or {})}, timeout=60)


def quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def served(server: FileServer, corpus: dlreg.Corpus, payloads: list[bytes]) -> dlreg.Corpus:
    """`corpus` with its files served locally (same names, subdirs, kinds) and their real checksums."""
    files = []
    for remote, data in zip(corpus.files, payloads):
        server.files[remote.filename] = data
        files.append(dataclasses.replace(remote, urls=(server.url(remote.filename),), sha256=sha(data), size=len(data)))
    return dataclasses.replace(corpus, files=tuple(files))


def write_registry(path: Path, entries: dict) -> dict:
    path.write_text(json.dumps(entries), encoding="utf-8")
    return {"ULMFIT_DOWNLOAD_REGISTRY": str(path)}


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


# --------------------------------------------------------------------------- the registry and the CLI


def test_every_entry_has_a_checksum_and_mirror_rewrites_urls(monkeypatch):
    for corpus in dlreg.REGISTRY.values():
        for remote in corpus.files:
            if corpus.kind == "corpus":
                assert re.fullmatch(r"[0-9a-f]{64}", remote.sha256 or ""), remote
            else:  # fastai's model zoo publishes no SHA-256: fastai's size + first-MiB MD5 (tests/test_wt103.py)
                assert remote.check == "size+head_md5" and re.fullmatch(r"[0-9a-f]{32}", remote.head_md5), remote
            assert remote.size and remote.source
    assert set(dlreg.REGISTRY) == {"wikitext103", "wikitext2", "imdb", "trec6", "ag_news", "dbpedia", "yelp_bi", "yelp_full",
                                "wt103"}
    monkeypatch.setenv("ULMFIT_DOWNLOAD_MIRROR", "http://127.0.0.1:1/corpora")
    assert dl._urls(dlreg.REGISTRY["imdb"].files[0]) == ("http://127.0.0.1:1/corpora/aclImdb_v1.tar.gz",)


def test_checksums_match_the_shared_copies(shared_data):
    sums = dict(reversed(line.split()) for line in (shared_data / "SHA256SUMS").read_text().splitlines() if line)
    assert [r.sha256 for r in dlreg.REGISTRY["trec6"].files] == [sums["trec6/train_5500.label"], sums["trec6/TREC_10.label"]]
    assert dlreg.REGISTRY["ag_news"].files[1].sha256 == sums["agnews/test.csv"]
    assert sha(dlreg.REGISTRY["ag_news"].inline["classes.txt"].encode()) == sums["agnews/classes.txt"]


def test_help_and_list(tmp_path):
    out = run("--help", cwd=tmp_path, check=True).stdout
    assert "ulmfit download NAME" in out and "--dest" in out and "--list" in out and "ULMFIT_DOWNLOAD_MIRROR" in out
    listing = run("--list", cwd=tmp_path, check=True).stdout
    for name, corpus in dlreg.REGISTRY.items():
        assert re.search(rf"^{name}\s", listing, re.M)
        assert corpus.files[0].urls[0] in listing
    assert listing.count("sha256 verified") == sum(c.kind == "corpus" for c in dlreg.REGISTRY.values())
    bad = run("no_such_corpus", cwd=tmp_path)
    assert bad.returncode == 2 and "Unknown corpus 'no_such_corpus'" in bad.stderr and "trec6" in bad.stderr


# --------------------------------------------------------------------------- full downloads


def test_trec6_via_mirror_then_second_call_is_a_noop(server, tmp_path, shared_data):
    """The built-in trec6 entry (its real checksums) through the console script, files served locally."""
    for name in ("train_5500.label", "TREC_10.label"):
        server.files[name] = (shared_data / "trec6" / name).read_bytes()
    dest = tmp_path / "data"
    env = {"ULMFIT_DOWNLOAD_MIRROR": server.base}
    proc = run("trec6", "--dest", str(dest), env=env, cwd=tmp_path, check=True)
    assert f"ready in {dest / 'trec6'}" in proc.stdout and "checksums verified" in proc.stdout
    assert f"ulmfit train-clf dataset=trec6 data_root={dest}" in proc.stdout
    assert server.requests == [("train_5500.label", None), ("TREC_10.label", None)]  # the only endpoint
    assert leftovers(dest) == ["trec6"]  # no .partial, no temp folder
    assert (dest / "trec6" / "train_5500.label").read_bytes() == server.files["train_5500.label"]
    marker = json.loads((dest / "trec6" / dlreg.MARKER).read_text())
    assert [f["verified"] for f in marker["files"]] == [True, True]
    assert marker["files"][0]["url"] == server.url("train_5500.label") and marker["date"]

    ds = load_dataset(DatasetConfig(name="trec6"), data_root=str(dest))
    assert len(ds.train_texts) + len(ds.valid_texts) == 5452 and len(ds.test_texts) == 500

    # No --dest: $ULMFIT_DATA, where the readers look by default.
    again = run("trec6", env={**env, "ULMFIT_DATA": str(dest)}, cwd=tmp_path, check=True)
    assert "already downloaded" in again.stdout and str(dest / "trec6") in again.stdout
    assert len(server.requests) == 2  # nothing was requested


IMDB_FILES = {
    **{f"aclImdb/{split}/{label}/{i}_{7 if label == 'pos' else 2}.txt": f"{label} review {i} of {split}".encode()
       for split in ("train", "test") for label in ("pos", "neg") for i in range(6)},
    **{f"aclImdb/train/unsup/{i}_0.txt": f"unlabelled review {i}".encode() for i in range(4)},
    "aclImdb/README": b"readme",
}
WIKI = "\n = Title {n} = \n\n some text about {n} .\n\n = = Section = = \n\n more words .\n"
WIKI_FILES = {f"wikitext-2/wiki.{s}.tokens": "".join(WIKI.format(n=i) for i in range(8)).encode()
              for s in ("train", "valid", "test")}
YELP_FILES = {f"yelp_review_polarity_csv/{s}.csv": "".join(f'"{1 + i % 2}","review {i} of {s}"\n' for i in range(30)).encode()
              for s in ("train", "test")}
YELP_FILES["yelp_review_polarity_csv/readme.txt"] = b"readme"


@pytest.mark.parametrize("name,payload,expect", [
    ("imdb", tar_gz(IMDB_FILES), ["train/pos/0_7.txt", "test/neg/5_2.txt", "train/unsup/3_0.txt"]),
    ("wikitext2", zip_bytes(WIKI_FILES), ["wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"]),
    ("yelp_bi", tar_gz(YELP_FILES), ["train.csv", "test.csv", "readme.txt"]),
])
def test_archives_unpack_into_the_reader_layout(server, tmp_path, capsys, name, payload, expect):
    corpus = served(server, dlreg.REGISTRY[name], [payload])
    dest = tmp_path / "data"
    target = dl.download(name, dest, registry={name: corpus}, console=quiet())
    assert target == dest / name and leftovers(dest) == [name]
    for rel in expect:
        assert (target / rel).is_file(), rel
    ds = load_dataset(DatasetConfig(name=name), data_root=str(dest))
    assert ds.train_texts and ds.test_texts
    if name == "imdb":
        assert ds.classes == ["neg", "pos"] and len(ds.lm_extra) == 4
    if name == "yelp_bi":
        assert ds.classes == ["1", "2"]
    assert "ready in" in capsys.readouterr().out


def test_ag_news_gets_its_class_names(server, tmp_path):
    train = "".join(f'"{1 + i % 4}","title {i}","body {i}"\n' for i in range(40)).encode()
    test = "".join(f'"{1 + i % 4}","t {i}","b {i}"\n' for i in range(8)).encode()
    corpus = served(server, dlreg.REGISTRY["ag_news"], [train, test])
    dl.download("ag_news", tmp_path, registry={"ag_news": corpus}, console=quiet())
    ds = load_dataset(DatasetConfig(name="ag_news"), data_root=str(tmp_path))
    assert ds.classes == ["Business", "Sci/Tech", "Sports", "World"]


# --------------------------------------------------------------------------- interruptions


PAYLOAD = os.urandom(300_000)  # incompressible: the tar.gz stays ~300 kB
ARCHIVE = tar_gz({"tiny/data.bin": PAYLOAD, "tiny/README": b"tiny corpus"})


def tiny_entry(server: FileServer, sha256: str | None = sha(ARCHIVE), name: str = "tiny.tar.gz") -> dict:
    server.files.setdefault("tiny.tar.gz", ARCHIVE)
    return {"tiny": {"description": "test corpus", "files": [
        {"url": server.url(name), "sha256": sha256, "size": len(ARCHIVE), "subdir": "tiny"}]}}


def tiny_registry(server: FileServer, tmp_path: Path, **kw) -> dict:
    path = tmp_path / "reg.json"
    write_registry(path, tiny_entry(server, **kw))
    return dlreg.load_registry(path)


def test_interrupted_download_resumes_with_range(server, tmp_path):
    env = write_registry(tmp_path / "reg.json", tiny_entry(server))
    dest = tmp_path / "data"
    server.cut["tiny.tar.gz"] = 100_000
    first = run("tiny", "--dest", str(dest), "--retries", "0", env=env, cwd=tmp_path)
    assert first.returncode == 2, first.stderr
    assert "closed after 100,000 of" in first.stderr and "resumes" in first.stderr
    assert "Traceback" not in first.stderr
    part = dest / ".partial" / "tiny.tar.gz.part"
    assert part.stat().st_size == 100_000 and not (dest / "tiny").exists()

    second = run("tiny", "--dest", str(dest), env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert server.requests == [("tiny.tar.gz", None), ("tiny.tar.gz", "bytes=100000-")]
    assert (dest / "tiny" / "data.bin").read_bytes() == PAYLOAD
    marker = json.loads((dest / "tiny" / dlreg.MARKER).read_text())
    assert marker["files"][0]["sha256"] == sha(ARCHIVE) and marker["files"][0]["verified"] is True
    assert leftovers(dest) == ["tiny"]


def test_retries_resume_within_one_call(server, tmp_path):
    registry = tiny_registry(server, tmp_path)
    server.cut["tiny.tar.gz"] = 50_000
    console = quiet()
    dl.download("tiny", tmp_path / "data", registry=registry, retries=1, retry_wait=0, console=console)
    assert server.requests == [("tiny.tar.gz", None), ("tiny.tar.gz", "bytes=50000-")]
    assert "retrying (1 of 1)" in console.file.getvalue()
    assert (tmp_path / "data" / "tiny" / "data.bin").read_bytes() == PAYLOAD


def test_read_timeout_keeps_the_partial_file(server, tmp_path, monkeypatch):
    registry = tiny_registry(server, tmp_path)
    monkeypatch.setattr(dl, "TIMEOUT_S", 0.2)
    server.stall["tiny.tar.gz"] = 20_000
    with pytest.raises(UserError, match=r"timed out.*20,000 bytes are kept in .*tiny.tar.gz.part.*resumes"):
        dl.download("tiny", tmp_path / "data", registry=registry, retries=0, console=quiet())
    assert (tmp_path / "data" / ".partial" / "tiny.tar.gz.part").stat().st_size == 20_000


def test_next_mirror_is_tried_when_a_url_fails(server, tmp_path):
    server.files["tiny.tar.gz"] = ARCHIVE
    entry = {"tiny": {"files": [{"urls": [server.url("gone/tiny.tar.gz"), server.url("tiny.tar.gz")],
                                 "sha256": sha(ARCHIVE)}]}}
    registry = dlreg.load_registry(write_registry(tmp_path / "reg.json", entry)["ULMFIT_DOWNLOAD_REGISTRY"])
    dl.download("tiny", tmp_path / "data", registry=registry, console=quiet())
    assert server.requests == [("gone/tiny.tar.gz", None), ("tiny.tar.gz", None)]
    assert json.loads((tmp_path / "data" / "tiny" / dlreg.MARKER).read_text())["files"][0]["url"] == server.url("tiny.tar.gz")


def test_server_without_range_support_restarts_the_file(server, tmp_path):
    registry = tiny_registry(server, tmp_path)
    part = tmp_path / "data" / ".partial" / "tiny.tar.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from another file")
    server.no_range = True  # answers 200 with the whole file
    dl.download("tiny", tmp_path / "data", registry=registry, console=quiet())
    assert server.requests == [("tiny.tar.gz", "bytes=29-")]
    assert (tmp_path / "data" / "tiny" / "data.bin").read_bytes() == PAYLOAD


def test_complete_partial_file_is_verified_not_refetched(server, tmp_path):
    registry = tiny_registry(server, tmp_path)
    part = tmp_path / "data" / ".partial" / "tiny.tar.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(ARCHIVE)
    dl.download("tiny", tmp_path / "data", registry=registry, console=quiet())
    assert server.requests == [("tiny.tar.gz", f"bytes={len(ARCHIVE)}-")]  # answered 416: nothing left to send
    assert (tmp_path / "data" / "tiny" / "data.bin").read_bytes() == PAYLOAD


# --------------------------------------------------------------------------- failures


def test_checksum_mismatch_is_rejected_and_leaves_nothing(server, tmp_path):
    wrong = sha(b"some other archive")
    env = write_registry(tmp_path / "reg.json", tiny_entry(server, sha256=wrong))
    dest = tmp_path / "data"
    proc = run("tiny", "--dest", str(dest), env=env, cwd=tmp_path)
    assert proc.returncode == 2
    err = " ".join(proc.stderr.split())
    assert "SHA-256 mismatch for tiny.tar.gz" in err and f"expected {wrong}" in err and f"got {sha(ARCHIVE)}" in err
    assert "Re-run `ulmfit download tiny`" in err and "Traceback" not in proc.stderr
    assert leftovers(dest) == []  # no corpus, no .part, no temp folder


def test_unverified_entry_warns_with_its_checksum(server, tmp_path):
    env = write_registry(tmp_path / "reg.json", tiny_entry(server, sha256=None))
    proc = run("tiny", "--dest", str(tmp_path / "data"), env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    err = " ".join(proc.stderr.split())
    assert "could not be verified" in err and sha(ARCHIVE) in err
    assert "NOT verified" in proc.stdout
    marker = json.loads((tmp_path / "data" / "tiny" / dlreg.MARKER).read_text())
    assert marker["files"][0]["verified"] is False and marker["files"][0]["sha256"] == sha(ARCHIVE)


def test_http_404_names_the_url_and_the_way_out(server, tmp_path):
    env = write_registry(tmp_path / "reg.json", tiny_entry(server, name="missing.tar.gz"))
    proc = run("tiny", "--dest", str(tmp_path / "data"), env=env, cwd=tmp_path)
    assert proc.returncode == 2
    err = " ".join(proc.stderr.split())
    assert server.url("missing.tar.gz") in err and "HTTP 404" in err and "dataset.data_dir=" in err
    assert server.requests == [("missing.tar.gz", None)]  # 404 is not retried
    assert not (tmp_path / "data" / "tiny").exists()


def test_folder_not_made_by_download_is_left_alone_unless_forced(server, tmp_path):
    registry = tiny_registry(server, tmp_path)
    mine = tmp_path / "data" / "tiny"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("my own files")
    with pytest.raises(UserError, match="not made by `ulmfit download`"):
        dl.download("tiny", tmp_path / "data", registry=registry, console=quiet())
    assert server.requests == [] and (mine / "notes.txt").exists()
    dl.download("tiny", tmp_path / "data", registry=registry, force=True, console=quiet())
    assert not (mine / "notes.txt").exists() and (mine / "data.bin").read_bytes() == PAYLOAD
    assert leftovers(tmp_path / "data") == ["tiny"]


def test_archive_with_unsafe_paths_is_refused(server, tmp_path):
    evil = tar_gz({"tiny/ok.txt": b"ok", "tiny/../../evil.txt": b"gotcha"})
    server.files["tiny.tar.gz"] = evil
    registry = tiny_registry(server, tmp_path, sha256=sha(evil))
    with pytest.raises(UserError, match="unsafe path"):
        dl.download("tiny", tmp_path / "data", registry=registry, console=quiet())
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "data" / "tiny").exists()
    assert leftovers(tmp_path / "data") == []  # the archive was deleted too
