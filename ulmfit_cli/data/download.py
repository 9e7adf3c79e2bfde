"""`ulmfit download NAME [--dest DIR]`: fetch a corpus into the layout `ulmfit_cli.data.readers` reads.

`ulmfit download trec6` leaves `<dest>/trec6/train_5500.label` and `TREC_10.label`, so that
`ulmfit train-clf dataset=trec6` finds them; `--dest` defaults to `$ULMFIT_DATA`, else
`~/.cache/ulmfit` (`readers.default_data_root()`, where the readers look). Layouts:

    wikitext103, wikitext2   <dest>/<name>/wiki.{train,valid,test}.tokens
    imdb                     <dest>/imdb/{train,test}/{pos,neg}/*.txt, train/unsup/ (the aclImdb folder)
    trec6                    <dest>/trec6/train_5500.label, TREC_10.label
    ag_news                  <dest>/ag_news/train.csv, test.csv, classes.txt
    dbpedia, yelp_bi, yelp_full   <dest>/<name>/train.csv, test.csv, classes.txt, readme.txt
    wt103                    <dest>/wt103/fwd/{lstm_fwd.pth,itos_wt103.pkl}, bwd/{lstm_bwd.pth,itos_wt103.pkl}:
                             fastai's pretrained WikiText-103 AWD_LSTM (kind "fastai_lm"); `ulmfit download`
                             (commands/download.py) imports it into <dest>/wt103/run, the pretrain run
                             that `pretrained=wt103` names

How a download goes:

1. Each file streams (with a rich progress bar) into `<dest>/.partial/<file>.part`. When a `.part`
   is already there, the request carries `Range: bytes=N-`: a `206` answer is appended, a `200`
   (server without range support) restarts the file. Interruptions are retried `--retries` times,
   each resuming where the last stopped; a failed command keeps the `.part` so that running it
   again resumes too.
2. The whole file's SHA-256 is checked against the registry before anything is unpacked. A
   mismatch deletes the file and fails with the expected and actual hash. Where the publisher
   gives no SHA-256 but records the size and the MD5 of the first MiB (fastai's own check, as for
   its model zoo), those two are checked instead (`head_md5`), the same way; the file's SHA-256 is
   then printed and kept in the marker. Entries with neither (`sha256=None`) are downloaded with
   a warning that prints the file's SHA-256.
3. Archives (zip, tar.gz/tgz, plain files) unpack into a temporary folder inside `<dest>`, which is
   renamed to `<dest>/<name>` only once complete: an interrupted unpack leaves no half corpus.
   A file's `expect` patterns must match in what it unpacked, else the archive is deleted, nothing
   is installed and the error names what is missing.
   `<dest>/<name>/.ulmfit-download.json` (URL, SHA-256, date) marks a finished download; with it
   present a second `ulmfit download NAME` does nothing but say where the corpus is.

Environment variables:

    ULMFIT_DATA=DIR                 default --dest (shared with the readers).
    ULMFIT_DOWNLOAD_MIRROR=URL      fetch every file from URL instead of its registry host: a file's
                                    URL becomes URL + its file name, e.g. with
                                    ULMFIT_DOWNLOAD_MIRROR=http://127.0.0.1:8000/corpora/ the imdb
                                    archive is http://127.0.0.1:8000/corpora/aclImdb_v1.tar.gz.
                                    Checksums still apply. Used by the tests and for local mirrors.
    ULMFIT_DOWNLOAD_REGISTRY=FILE   a JSON file whose entries add to (or replace, by name) the
                                    built-in registry: {"NAME": {"description": "...", "files":
                                    [{"url": "...", "sha256": "..." or null, "size": 123 or null,
                                    "head_md5": "MD5 of the first MiB" or null,
                                    "kind": "zip"|"tar"|"file" (default: from the name),
                                    "subdir": "folder inside the archive", "*" (its one top-level
                                    folder, if it has exactly one) or null,
                                    "into": "folder under <dest>/<name>" or null,
                                    "expect": ["glob that must match after unpacking", ...]}],
                                    "inline": {"classes.txt": "text"},
                                    "kind": "corpus" (default) or "fastai_lm"}}.

The corpora's checksums are the SHA-256 values published in the HuggingFace `datasets` loading
scripts' `dataset_infos.json` (`download_checksums`) for the same URLs; `source` in each entry says
which. fastai publishes no SHA-256 for its model zoo: wt103's two archives are checked against the
size and first-MiB MD5 that fastai 1 recorded for them (fastai/datasets.py `_checks`, checked by its
`untar_data`), and against their structure by the import.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import posixpath
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from ..errors import UserError, disk_error
from ..fileutil import file_lock

__all__ = ["Corpus", "Remote", "REGISTRY", "download", "load_registry", "main", "pretrained_names",
           "pretrained_run_dir"]

MARKER = ".ulmfit-download.json"
PARTIAL = ".partial"
RUN = "run"  # <dest>/<name>/run: the pretrain run imported from a downloaded model (kind "fastai_lm")
AUTO = "*"  # Remote.subdir: the archive's one top-level folder, if it has exactly one (as fastai's untar_data)
HEAD = 1 << 20  # fastai's check hashes the first MiB
CHUNK = 1 << 16
TIMEOUT_S = 60
# wikitext.smerity.com answers urllib's default User-Agent with 403.
USER_AGENT = "Mozilla/5.0 (compatible; ulmfit-cli download; +https://github.com/fastai/fastai)"
# Answers worth retrying: the server is busy or broken right now, not the URL wrong.
TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Remote:
    """One file to fetch. `urls[0]` is the canonical address; the others serve the same bytes
    (same checksum) and are tried in turn when one fails."""

    urls: tuple[str, ...]
    sha256: str | None
    size: int | None = None
    kind: str | None = None  # "zip", "tar" or "file"; None: from the file name
    subdir: str | None = None  # folder inside the archive whose contents become <dest>/<name>; AUTO: see AUTO
    source: str = ""  # where the checksum comes from
    # fastai's check where no SHA-256 is published: `size` and the MD5 of the first MiB (fastai's `_check_file`)
    head_md5: str | None = None
    into: str | None = None  # folder under <dest>/<name> that the contents go to (None: <dest>/<name> itself)
    expect: tuple[str, ...] = ()  # glob patterns (under `into`) that must match once unpacked

    @property
    def check(self) -> str:
        """How the file is verified: "sha256", "size+head_md5" or "none"."""
        if self.sha256:
            return "sha256"
        return "size+head_md5" if self.head_md5 and self.size else "none"

    @property
    def filename(self) -> str:
        return posixpath.basename(urlsplit(self.urls[0]).path) or "download"

    @property
    def archive_kind(self) -> str:
        if self.kind:
            return self.kind
        name = self.filename.lower()
        if name.endswith(".zip"):
            return "zip"
        if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")):
            return "tar"
        return "file"


@dataclass(frozen=True)
class Corpus:
    name: str
    description: str
    files: tuple[Remote, ...]
    inline: dict[str, str] = field(default_factory=dict)  # small files written as they are
    # "corpus": text the readers read; "fastai_lm": a fastai AWD_LSTM (fwd/, bwd/) that `ulmfit download`
    # imports into <dest>/<name>/run, the pretrain run `pretrained=<name>` names
    kind: str = "corpus"


def _hf(dataset: str) -> str:
    return f"huggingface/datasets datasets/{dataset}/dataset_infos.json (download_checksums)"


_WIKITEXT_NOTE = ("; the Salesforce S3 bucket is gone (HTTP 403), wikitext.smerity.com "
                  "(Stephen Merity, the dataset's author) serves the same zip")

REGISTRY: dict[str, Corpus] = {c.name: c for c in (
    Corpus("wikitext103", "WikiText-103 v1, tokenized (103M words): the general-domain LM corpus", (
        Remote(("https://wikitext.smerity.com/wikitext-103-v1.zip",
                "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-v1.zip"),
               "242ba0f20b329cfdf1ccc61e9e9e5b59becf189db7f7a81cd2a0e2fc31539590", 190229076, "zip", "wikitext-103",
               _hf("wikitext") + " for the research.metamind.io URL" + _WIKITEXT_NOTE),
    )),
    Corpus("wikitext2", "WikiText-2 v1, tokenized (2M words): a small LM corpus for quick runs", (
        Remote(("https://wikitext.smerity.com/wikitext-2-v1.zip",
                "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip"),
               "92675f1d63015c1c8b51f1656a52d5bdbc33aafa60cc47a218a66e7ee817488c", 4475746, "zip", "wikitext-2",
               _hf("wikitext") + " for the research.metamind.io URL" + _WIKITEXT_NOTE),
    )),
    Corpus("imdb", "IMDb movie reviews (aclImdb v1): 25k train, 25k test, 50k unlabelled; 2 classes", (
        Remote(("https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",),
               "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe", 84125825, "tar", "aclImdb",
               _hf("imdb") + " (http:// form of the URL)"),
    )),
    Corpus("trec6", "TREC question classification: 5,452 train, 500 test questions; 6 coarse classes", (
        Remote(("https://cogcomp.seas.upenn.edu/Data/QA/QC/train_5500.label",),
               "9e4c8bdcaffb96ed61041bd64b564183d52793a8e91d84fc3a8646885f466ec3", 335858, "file", None,
               _hf("trec") + "; equals shared/data/SHA256SUMS"),
        Remote(("https://cogcomp.seas.upenn.edu/Data/QA/QC/TREC_10.label",),
               "033f22c028c2bbba9ca682f68ffe204dc1aa6e1cf35dd6207f2d4ca67f0d0e8e", 23354, "file", None,
               _hf("trec") + "; equals shared/data/SHA256SUMS"),
    )),
    # The two CSVs the HF and torchtext loaders use (the fast.ai tgz has no published SHA-256);
    # classes.txt is the official 4-line file (its SHA-256 is in shared/data/SHA256SUMS too).
    Corpus("ag_news", "AG News topics (Zhang et al. 2015): 120k train, 7.6k test; 4 classes", (
        Remote(("https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/train.csv",),
               "76a0a2d2f92b286371fe4d4044640910a04a803fdd2538e0f3f29a5c6f6b672e", 29470338, "file", None,
               _hf("ag_news")),
        Remote(("https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/test.csv",),
               "521465c2428ed7f02f8d6db6ffdd4b5447c1c701962353eb2c40d548c3c85699", 1857427, "file", None,
               _hf("ag_news") + "; equals shared/data/SHA256SUMS"),
    ), inline={"classes.txt": "World\nSports\nBusiness\nSci/Tech\n"}),
    Corpus("dbpedia", "DBpedia ontology (Zhang et al. 2015): 560k train, 70k test; 14 classes", (
        Remote(("https://s3.amazonaws.com/fast-ai-nlp/dbpedia_csv.tgz",),
               "42db5221ddedddb673a4cabcc5f3a7d869714c878bcfe4ba94b29d14aa38e417", 68341743, "tar", "dbpedia_csv",
               _hf("dbpedia_14")),
    )),
    Corpus("yelp_bi", "Yelp review polarity (Zhang et al. 2015): 560k train, 38k test; 2 classes", (
        Remote(("https://s3.amazonaws.com/fast-ai-nlp/yelp_review_polarity_csv.tgz",),
               "528f22e286cad085948acbc3bea7e58188416546b0e364d0ae4ca0ce666abe35", 166373201, "tar",
               "yelp_review_polarity_csv", _hf("yelp_polarity")),
    )),
    Corpus("yelp_full", "Yelp review full stars (Zhang et al. 2015): 650k train, 50k test; 5 classes", (
        Remote(("https://s3.amazonaws.com/fast-ai-nlp/yelp_review_full_csv.tgz",),
               "56006b0a17a370f1e366504b1f2c3e3754e4a3dda17d3e718a885c552869a559", 196146755, "tar",
               "yelp_review_full_csv", _hf("yelp_review_full")),
    )),
    # fastai's URLs.WT103_FWD / WT103_BWD. fastai publishes no SHA-256 for them: the size and first-MiB
    # MD5 are what fastai 1 checked them against. The folder fastai's untar_data gives holds
    # lstm_fwd.pth (lstm_bwd.pth) and itos_wt103.pkl; fastai itself takes the *.pth and *.pkl it finds.
    Corpus("wt103", "fastai's AWD-LSTM pretrained on WikiText-103 (fwd + bwd; 400/1152/3, 60k vocab), "
                    "imported as the pretrain run pretrained=wt103", tuple(
        Remote((f"https://s3.amazonaws.com/fast-ai-modelzoo/wt103-{d}.tgz",), sha256=None, size=size, kind="tar",
               subdir=AUTO, head_md5=md5, into=d, expect=("*.pth", "*.pkl"),
               source="size and MD5 of the first MiB as fastai 1 records them (fastai/datasets.py _checks, "
                      "checked by its untar_data); fastai publishes no SHA-256")
        for d, size, md5 in (("fwd", 105067061, "7d1114cd9684bf9d1ca3c9f6a54da6f9"),
                             ("bwd", 105205312, "20b06f5830fd5a891d21044c28d3097f"))),
        kind="fastai_lm"),
)}


def _remote_from_json(name: str, raw: dict, path: str) -> Remote:
    urls = raw.get("urls") or raw.get("url")
    if isinstance(urls, str):
        urls = [urls]
    if not urls or not all(isinstance(u, str) for u in urls):
        raise UserError(f"{path}: an entry of {name!r}.files has no \"url\".",
                        'Give each file as {"url": "https://...", "sha256": "..." or null}.')
    sha = raw.get("sha256")
    if sha is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", str(sha)):
        raise UserError(f"{path}: sha256 {sha!r} of {urls[0]} is not 64 hex digits.", "Give the full SHA-256, or null.")
    kind = raw.get("kind")
    if kind not in (None, "zip", "tar", "file"):
        raise UserError(f"{path}: kind {kind!r} of {urls[0]} is not zip, tar or file.", "Fix or drop \"kind\".")
    head = raw.get("head_md5")
    if head is not None and not re.fullmatch(r"[0-9a-fA-F]{32}", str(head)):
        raise UserError(f"{path}: head_md5 {head!r} of {urls[0]} is not 32 hex digits.", "Give the MD5, or null.")
    if head is not None and not raw.get("size"):
        raise UserError(f"{path}: head_md5 of {urls[0]} needs the file's \"size\" too.", "Add \"size\": <bytes>.")
    expect = raw.get("expect") or ()
    if isinstance(expect, str) or not all(isinstance(e, str) for e in expect):
        raise UserError(f"{path}: expect of {urls[0]} is not a list of glob patterns.", 'Write "expect": ["*.pth"].')
    return Remote(tuple(urls), sha.lower() if sha else None, raw.get("size"), kind, raw.get("subdir"),
                  raw.get("source", path), head.lower() if head else None, raw.get("into"), tuple(expect))


def load_registry(path: str | os.PathLike | None = None) -> dict[str, Corpus]:
    """The built-in registry, plus (replacing by name) the entries of `path` or $ULMFIT_DOWNLOAD_REGISTRY."""
    path = path or os.environ.get("ULMFIT_DOWNLOAD_REGISTRY")
    registry = dict(REGISTRY)
    if not path:
        return registry
    try:
        data = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"Cannot read the download registry {path} (ULMFIT_DOWNLOAD_REGISTRY): {e.strerror}.",
                        "Fix the path or unset ULMFIT_DOWNLOAD_REGISTRY.") from e
    except json.JSONDecodeError as e:
        raise UserError(f"The download registry {path} is not valid JSON ({e.msg}, line {e.lineno}).",
                        "Fix the file or unset ULMFIT_DOWNLOAD_REGISTRY.") from e
    if not isinstance(data, dict):
        raise UserError(f"The download registry {path} is not a JSON object.", 'Write {"NAME": {"files": [...]}}.')
    for name, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("files"), list):
            raise UserError(f"{path}: entry {name!r} has no \"files\" list.", 'Write {"NAME": {"files": [{"url": ...}]}}.')
        files = tuple(_remote_from_json(name, f, str(path)) for f in entry["files"])
        kind = entry.get("kind", "corpus")
        if kind not in ("corpus", "fastai_lm"):
            raise UserError(f"{path}: entry {name!r} has kind {kind!r}.", 'Use "corpus" (the default) or "fastai_lm".')
        registry[name] = Corpus(name, entry.get("description", ""), files, dict(entry.get("inline") or {}), kind)
    return registry


def pretrained_names(registry: dict[str, Corpus] | None = None) -> list[str]:
    """The names `pretrained=` accepts for a downloaded model (kind "fastai_lm"): wt103."""
    registry = load_registry() if registry is None else registry
    return [n for n, c in registry.items() if c.kind == "fastai_lm"]


def pretrained_run_dir(name: str, data_root: str | os.PathLike | None = None) -> Path:
    """Where `ulmfit download NAME` keeps the pretrain run of a downloaded model: <data root>/NAME/run."""
    root = Path(data_root).expanduser() if data_root else default_data_root()
    return root / name / RUN


def _urls(remote: Remote) -> tuple[str, ...]:
    """$ULMFIT_DOWNLOAD_MIRROR replaces every address by MIRROR + the file's name."""
    mirror = os.environ.get("ULMFIT_DOWNLOAD_MIRROR")
    if not mirror:
        return remote.urls
    return (mirror.rstrip("/") + "/" + remote.filename,)


# --------------------------------------------------------------------------- small helpers


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def head_md5_file(path: Path) -> str:
    """MD5 of the first MiB: the hash half of fastai's download check (`_check_file`, fastdownload's `path_stats`)."""
    with open(path, "rb") as fh:
        return hashlib.md5(fh.read(HEAD)).hexdigest()


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _disk_error(e: OSError, what: Path) -> UserError | OSError:
    return disk_error(e, str(what),
                      full_fix="Free some space (the partial download is kept and resumes), or pick another disk "
                               "with --dest DIR (then pass data_root=DIR to the training commands).",
                      access_fix="Make it writable, or pick a writable folder with --dest DIR "
                                 "(then pass data_root=DIR to the training commands).")


def _lock(path: Path, name: str):
    """One `ulmfit download NAME` at a time per --dest: two writers would corrupt the .part file."""
    return file_lock(path, wait=False, remove=True, busy=lambda: UserError(
        f"Another `ulmfit download {name}` is already writing into {path.parent.parent}.",
        "Wait for it to finish (or stop it), then run this again."))


# --------------------------------------------------------------------------- fetching


class _Transient(Exception):
    """Worth another try: the connection broke, timed out, or the server is busy."""


class _Fatal(Exception):
    """This URL will not work (404, 403, ...); another mirror might."""


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """`bytes 100-199/1000` -> (100, 1000); `bytes */1000` -> (None, 1000)."""
    m = re.match(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _stream(opener, url: str, part: Path, size_hint: int | None, progress, task) -> None:
    """Append the rest of `url` to `part` (all of it when the server ignores Range)."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = opener.open(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        with e:
            if e.code == 416 and have:
                _, total = _content_range(e.headers.get("Content-Range"))
                if total == have:
                    return  # the .part was already complete
                part.unlink()
                raise _Transient("the server could not resume the partial file; starting it over") from e
            reason = f"HTTP {e.code} {e.reason}"
            raise (_Transient(reason) if e.code in TRANSIENT_HTTP else _Fatal(reason)) from e
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise _Transient(f"cannot connect ({reason})") from e
    with resp:
        if resp.status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != have:
                part.unlink()
                raise _Transient(f"the server resumed at byte {start}, not {have}; starting over")
            mode = "ab"
        else:  # 200: the whole file (a server without Range support) -> start over
            have, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        progress.update(task, total=total or size_hint, completed=have)
        with open(part, mode) as fh:
            while True:
                try:
                    chunk = resp.read1(CHUNK)  # what has arrived: a timeout loses nothing
                except (OSError, http.client.HTTPException) as e:  # reset, timeout, IncompleteRead
                    raise _Transient(f"the connection broke after {have:,} bytes ({str(e) or type(e).__name__})") from e
                if not chunk:
                    break
                fh.write(chunk)
                have += len(chunk)
                progress.update(task, advance=len(chunk))
    if total is not None and have < total:
        raise _Transient(f"the connection closed after {have:,} of {total:,} bytes")


def _try_url(opener, url: str, remote: Remote, part: Path, progress, task, retries: int,
             retry_wait: float) -> str | None:
    """None once `part` holds the whole file, else why `url` failed."""
    for attempt in range(retries + 1):
        try:
            _stream(opener, url, part, remote.size, progress, task)
            return None
        except _Fatal as e:
            return f"{url} answered {e}"
        except _Transient as e:
            if attempt == retries:
                return f"{url}: {e}"
            progress.console.print(f"[yellow]{remote.filename}:[/] {e}; retrying ({attempt + 1} of {retries}), "
                                   "resuming from the partial file.")
            time.sleep(retry_wait * (attempt + 1))
    return None  # not reached


def _fetch(corpus: Corpus, remote: Remote, partial: Path, progress, retries: int, retry_wait: float,
           target: Path) -> tuple[Path, str, str]:
    """Download one file into `partial/` and verify it: (path, URL used, its SHA-256)."""
    done = partial / remote.filename  # verified on an earlier run that then failed to unpack
    part = partial / (remote.filename + ".part")
    urls = _urls(remote)
    if done.exists():
        actual = sha256_file(done)
        if _mismatch(remote, done, actual) is None:
            return done, urls[0], actual
        done.unlink()

    opener = urllib.request.build_opener()  # reads the *_proxy variables now
    task = progress.add_task(remote.filename, total=remote.size)
    failures: list[str] = []
    for url in urls:  # mirrors in turn; each with its retries, all resuming the same .part
        failure = _try_url(opener, url, remote, part, progress, task, retries, retry_wait)
        if failure is None:
            break
        failures.append(failure)
    else:
        raise _download_error(corpus, remote, part, failures, target)

    actual = sha256_file(part)
    got = part.stat().st_size
    mismatch = _mismatch(remote, part, actual)
    if mismatch is not None:
        part.unlink()
        what, expected, actual = mismatch
        raise UserError(
            f"{what} mismatch for {remote.filename} (downloaded from {url}, {got:,} bytes): expected {expected}, "
            f"got {actual}. The file was deleted; nothing was unpacked.",
            f"Re-run `ulmfit download {corpus.name}` to fetch it again. If it fails the same way, something "
            "between you and the server changes the file: check the URL (and ULMFIT_DOWNLOAD_MIRROR) and any "
            "proxy or captive portal.",
        )
    os.replace(part, done)
    return done, url, actual


def _mismatch(remote: Remote, path: Path, sha256: str) -> tuple[str, str, str] | None:
    """(what, expected, got) where `path` is not the file the registry describes; None when it is."""
    if remote.sha256 is not None:
        return None if sha256 == remote.sha256 else ("SHA-256", remote.sha256, sha256)
    got = path.stat().st_size
    if remote.size is not None and got != remote.size:
        return "Size", f"{remote.size:,} bytes", f"{got:,} bytes"
    if remote.head_md5 is not None:
        head = head_md5_file(path)
        if head != remote.head_md5:
            return "First-MiB MD5 (fastai's check)", remote.head_md5, head
    return None


def _download_error(corpus: Corpus, remote: Remote, part: Path, failures: list[str], target: Path) -> UserError:
    kept = part.stat().st_size if part.exists() else 0
    resume = f" {kept:,} bytes are kept in {part}; running the command again resumes from there." if kept else ""
    by_hand = (f"or download {remote.urls[0]} by hand, unpack it into {target} (or any folder, then point "
               "dataset.data_dir= at it).")
    if corpus.kind == "fastai_lm":
        by_hand = (f"or download {remote.urls[0]} by hand, unpack it and turn its .pth and .pkl into a pretrain "
                   "run with `ulmfit import-fastai --weights ... --vocab ...` (then pretrained=<that run>).")
    if all(" answered HTTP " in f for f in failures):  # the server said no: retrying will not help
        fix = ("The file is not (or no longer) at that address, or a proxy refuses it: set "
               f"ULMFIT_DOWNLOAD_MIRROR=URL to fetch {remote.filename} from a mirror, {by_hand}")
    else:
        fix = (f"Re-run `ulmfit download {corpus.name}` (it resumes) once the connection works (check any proxy), "
               f"{by_hand}")
    return UserError(f"Could not download {remote.filename} for {corpus.name!r}: {'; '.join(failures)}.{resume}", fix)


# --------------------------------------------------------------------------- unpacking


def _unsafe(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return p.is_absolute() or ".." in p.parts


def _extract(archive: Path, kind: str, into: Path) -> None:
    """Unpack a zip or tar archive; a damaged or malicious one is deleted (re-running fetches it anew)."""
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                names = zf.namelist()
                bad = next((n for n in names if _unsafe(n)), None)
                if bad is None:
                    zf.extractall(into)
        else:
            with tarfile.open(archive, "r:*") as tf:
                members = tf.getmembers()
                bad = next((m.name for m in members if _unsafe(m.name)
                            or (m.issym() or m.islnk()) and _unsafe(m.linkname)), None)
                if bad is None and hasattr(tarfile, "data_filter"):
                    tf.extractall(into, members=members, filter="data")
                elif bad is None:  # Python < 3.10.12: plain files and folders only
                    tf.extractall(into, members=[m for m in members if m.isfile() or m.isdir()])
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as e:
        archive.unlink(missing_ok=True)
        raise UserError(f"{archive.name} is not a readable {kind} archive ({e}); it was deleted and nothing "
                        "was unpacked.", "Run the command again to fetch it anew.") from e
    if bad is not None:
        archive.unlink(missing_ok=True)
        raise UserError(f"{archive.name} holds an unsafe path {bad!r} (outside the folder it unpacks into); "
                        "it was deleted and nothing was unpacked.",
                        "Check where the archive came from (the URL, ULMFIT_DOWNLOAD_MIRROR, any proxy).")


def _unpacked_root(raw: Path, remote: Remote) -> Path:
    """The folder of an unpacked archive whose contents are installed (`remote.subdir`)."""
    if remote.subdir == AUTO:  # as fastai's untar_data: one top-level folder is the content's folder
        top = list(raw.iterdir())
        return top[0] if len(top) == 1 and top[0].is_dir() else raw
    src = raw / remote.subdir if remote.subdir else raw
    if not src.is_dir():
        top = sorted(p.name for p in raw.iterdir())
        raise UserError(f"{remote.filename} has no folder {remote.subdir!r} (its top level holds {top}).",
                        "The registry entry's subdir does not match the archive; report this.")
    return src


def _check_expected(remote: Remote, path: Path, folder: Path) -> None:
    """Every `remote.expect` pattern matches in what the archive unpacked, else the archive is deleted."""
    missing = [pat for pat in remote.expect if not any(folder.glob(pat))]
    if not missing:
        return
    held = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    shown = ", ".join(held[:12]) + (f" and {len(held) - 12} more" if len(held) > 12 else "") if held else "nothing"
    path.unlink(missing_ok=True)
    raise UserError(
        f"{remote.filename} does not hold what it should: no {', no '.join(repr(m) for m in missing)} in it "
        f"(it holds {shown}). It was deleted; nothing was installed.",
        "Run the command again to fetch it anew; if the same happens, the file at that URL (or at "
        "ULMFIT_DOWNLOAD_MIRROR) is not the one the registry describes: check the URL and any proxy.")


def _install(corpus: Corpus, fetched: list[tuple[Remote, Path, str, str]], dest: Path, force: bool) -> Path:
    """Unpack into a temp folder inside `dest`, then rename it to `dest/<name>` in one step."""
    target = dest / corpus.name
    tmp = Path(tempfile.mkdtemp(prefix=f".{corpus.name}-", suffix=".unpacking", dir=dest))
    try:
        out = tmp / corpus.name
        out.mkdir()
        for i, (remote, path, _, _) in enumerate(fetched):
            into = out / remote.into if remote.into else out
            into.mkdir(parents=True, exist_ok=True)
            kind = remote.archive_kind
            if kind == "file":
                shutil.copyfile(path, into / remote.filename)
                continue
            raw = tmp / f"x{i}"
            _extract(path, kind, raw)
            src = _unpacked_root(raw, remote)
            _check_expected(remote, path, src)
            for child in src.iterdir():
                os.replace(child, into / child.name)
        for name, text in corpus.inline.items():
            (out / name).write_text(text, encoding="utf-8")
        marker = {
            "name": corpus.name,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "files": [{"file": r.filename, "url": url, "sha256": sha, "verified": r.check != "none",
                       "check": r.check, "bytes": p.stat().st_size} for r, p, url, sha in fetched],
        }
        (out / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        if target.exists() or target.is_symlink():
            if not force and not (target.is_dir() and not any(target.iterdir())):
                raise UserError(f"{target} appeared while unpacking.", "Run the command again.")
            if target.is_dir() and not target.is_symlink():
                os.replace(target, tmp / "replaced")  # deleted with tmp
            else:
                target.unlink()
        os.replace(out, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- the command


def read_marker(target: Path) -> dict | None:
    try:
        return json.loads((target / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _already_there(target: Path, name: str, force: bool) -> bool:
    marker = None if force else read_marker(target)
    if marker is not None:
        print(f"{name} is already downloaded in {target} (on {marker.get('date', '?')}); nothing to do.")
    return marker is not None


def _fetch_all(corpus: Corpus, partial: Path, target: Path, retries: int, retry_wait: float,
               console) -> list[tuple[Remote, Path, str, str]]:
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    fetched = []
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        for remote in corpus.files:
            path, url, sha = _fetch(corpus, remote, partial, progress, retries, retry_wait, target)
            fetched.append((remote, path, url, sha))
    for remote, _, url, sha in fetched:
        if remote.check == "none":
            console.print(f"[bold yellow]warning:[/] {remote.filename} (from {url}) could not be verified: no "
                          f"published SHA-256 is known for it. Its SHA-256 is {sha}; compare it with a trusted "
                          "copy before relying on it.", markup=True)
        elif remote.check == "size+head_md5":
            console.print(f"{remote.filename}: size ({remote.size:,} bytes) and MD5 of the first MiB match the "
                          f"publisher's record (no SHA-256 is published); its SHA-256 is {sha} (kept in {MARKER}).",
                          markup=False)
    return fetched


def default_data_root() -> Path:
    """readers.default_data_root(), imported late: the readers pull in pandas."""
    from .readers import default_data_root as root

    return root()


def download(name: str, dest: str | os.PathLike | None = None, *, registry: dict[str, Corpus] | None = None,
             force: bool = False, retries: int = 2, retry_wait: float = 1.0, console=None) -> Path:
    """Fetch corpus `name` into `dest/<name>` (see the module docstring); returns that folder."""
    registry = load_registry() if registry is None else registry
    corpus = registry.get(name)
    if corpus is None:
        raise UserError(f"Unknown corpus {name!r} for `ulmfit download`.",
                        f"Use one of: {', '.join(registry)} (`ulmfit download --list` shows URLs and sizes). "
                        "dataset=sample needs no download; dataset=csv/jsonl read your own files.")
    console = console or _stderr_console()
    dest = Path(dest).expanduser() if dest else default_data_root()
    target = dest / corpus.name
    if _already_there(target, name, force):
        return target
    if target.exists() and not force and not (target.is_dir() and not any(target.iterdir())):
        raise UserError(
            f"{target} already exists but was not made by `ulmfit download` (it has no {MARKER}); it was left alone.",
            f"The readers use it as it is. To replace it, move it away or run `ulmfit download {name} --force`.",
        )
    partial = dest / PARTIAL
    try:
        partial.mkdir(parents=True, exist_ok=True)
        try:
            with _lock(partial / f"{name}.lock", name):
                if _already_there(target, name, force):  # another run finished while this one started
                    return target
                fetched = _fetch_all(corpus, partial, target, retries, retry_wait, console)
                console.print(f"unpacking {name} into {target} ...")
                _install(corpus, fetched, dest, force)
                for _, path, _, _ in fetched:
                    path.unlink(missing_ok=True)
        finally:
            try:
                partial.rmdir()  # only when empty: partial files (this corpus's or others') stay
            except OSError:
                pass
    except OSError as e:
        raise _disk_error(e, partial) from e
    checks = {r.check for r in corpus.files}
    verified = ("checksums verified" if checks == {"sha256"} else "NOT verified, see the warning" if "none" in checks
                else "sizes and first-MiB MD5s verified; no SHA-256 is published")
    print(f"{name}: ready in {target} ({verified}).")
    root = "" if dest.resolve() == default_data_root().resolve() else f" data_root={dest}"
    if corpus.kind == "corpus":  # a model's next step is its import (commands/download.py)
        stage = "pretrain" if name.startswith("wikitext") else "train-clf"
        print(f"Use it with: ulmfit {stage} dataset={name}{root}")
    return target


def list_corpora(registry: dict[str, Corpus]) -> str:
    lines = []
    for c in registry.values():
        size = _human(sum(r.size for r in c.files)) if all(r.size for r in c.files) else "size unknown"
        checks = {r.check for r in c.files}
        check = ("sha256 verified" if checks == {"sha256"} else "NOT verified (no published sha256)" if "none" in checks
                 else "size + first-MiB md5 verified (no published sha256)")
        lines.append(f"{c.name:<12} {size:>10}  {check}  {c.description}")
        for r in c.files:
            lines.append(f"{'':<14}{r.urls[0]}")
            lines += [f"{'':<16}mirror: {u}" for u in r.urls[1:]]
        if checks == {"size+head_md5"}:  # say what stands in for the missing checksum
            how = [c.files[0].source]
            if c.files[0].expect:
                how.append(f"then each archive must hold {' and '.join(c.files[0].expect)}")
            if c.kind == "fastai_lm":
                how.append("the import reads the weights as tensors only and checks they form one AWD_LSTM whose "
                           "embedding has a row per token of the vocabulary both directions share")
            how.append(f"the full SHA-256 is printed and kept in {c.name}/{MARKER}")
            lines.append(f"{'':<14}verified by: {'; '.join(how)}")
    if os.environ.get("ULMFIT_DOWNLOAD_MIRROR"):
        lines.append(f"\nULMFIT_DOWNLOAD_MIRROR={os.environ['ULMFIT_DOWNLOAD_MIRROR']}: files are fetched from there.")
    return "\n".join(lines)


def parser(names: list[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ulmfit download",
        usage="ulmfit download NAME [--dest DIR] [--force] [--retries N] | ulmfit download --list",
        description="Fetch a corpus into the folder layout the readers expect, resumably and checksummed; "
                    "`wt103` fetches fastai's pretrained WikiText-103 LM (fwd + bwd) and imports it as the "
                    "pretrain run that `pretrained=wt103` names.",
        epilog=(f"corpora: {', '.join(names)}. Partial downloads live in DIR/.partial/ and resume (HTTP Range) "
                "when the command is run again. Environment: ULMFIT_DATA (default DIR), "
                "ULMFIT_DOWNLOAD_MIRROR=URL (fetch every file from URL/<file name>), "
                "ULMFIT_DOWNLOAD_REGISTRY=FILE.json (extra entries)."),
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="corpus to fetch (see --list)")
    p.add_argument("--dest", metavar="DIR", help="data root; the corpus lands in DIR/NAME "
                   "(default: $ULMFIT_DATA or ~/.cache/ulmfit, where the training commands look)")
    p.add_argument("--list", action="store_true", help="list the corpora with their URLs, sizes and checksum status")
    p.add_argument("--force", action="store_true", help="download and replace DIR/NAME even if it is already there")
    p.add_argument("--retries", type=int, default=2, metavar="N",
                   help="retries (each resuming) when the connection breaks (default: 2)")
    return p


def parse_args(argv: list[str], registry: dict[str, Corpus]) -> argparse.Namespace | None:
    """The command line of `ulmfit download`; None once `--list` has been answered."""
    args = parser(list(registry)).parse_args(argv)
    if args.list:
        print(list_corpora(registry))
        return None
    if not args.name:
        raise UserError("`ulmfit download` needs the NAME of a corpus.",
                        f"Use one of: {', '.join(registry)} (`ulmfit download --list` shows their URLs).")
    if args.retries < 0:
        raise UserError(f"--retries {args.retries} is negative.", "Use --retries 0 or more.")
    return args


def main(argv: list[str]) -> int:
    """Corpora only: `ulmfit download` (commands/download.py) also imports the models this fetches."""
    registry = load_registry()
    args = parse_args(argv, registry)
    if args is not None:
        download(args.name, args.dest, registry=registry, force=args.force, retries=args.retries)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
