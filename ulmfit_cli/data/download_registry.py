"""The download registry: what `ulmfit download NAME` fetches, from where, how each file is
verified and how it unpacks; the fetcher (download.py) does the fetching.

`ulmfit download trec6` leaves `<dest>/trec6/train_5500.label` and `TREC_10.label`, so that
`ulmfit train-clf dataset=trec6` finds them; `--dest` defaults to `$ULMFIT_DATA`, else
`~/.cache/ulmfit` (`default_data_root()`, where the readers look). Layouts:

    wikitext103, wikitext2   <dest>/<name>/wiki.{train,valid,test}.tokens
    imdb                     <dest>/imdb/{train,test}/{pos,neg}/*.txt, train/unsup/ (the aclImdb folder)
    trec6                    <dest>/trec6/train_5500.label, TREC_10.label
    ag_news                  <dest>/ag_news/train.csv, test.csv, classes.txt
    dbpedia, yelp_bi, yelp_full   <dest>/<name>/train.csv, test.csv, classes.txt, readme.txt
    wt103                    <dest>/wt103/fwd/{lstm_fwd.pth,itos_wt103.pkl}, bwd/{lstm_bwd.pth,itos_wt103.pkl}:
                             fastai's pretrained WikiText-103 AWD_LSTM (kind "fastai_lm"); `ulmfit download`
                             (commands/download.py) imports it into <dest>/wt103/run, the pretrain run
                             that `pretrained=wt103` names

Entries may be added or replaced by name with a JSON file:

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

import json
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import UserError

__all__ = ["Corpus", "Remote", "REGISTRY", "default_data_root", "load_registry", "pretrained_names",
           "pretrained_run_dir"]


MARKER = ".ulmfit-download.json"
RUN = "run"  # <dest>/<name>/run: the pretrain run imported from a downloaded model (kind "fastai_lm")
AUTO = "*"  # Remote.subdir: the archive's one top-level folder, if it has exactly one (as fastai's untar_data)


def default_data_root() -> Path:
    """`$ULMFIT_DATA` if set, else `~/.cache/ulmfit`: where `ulmfit download` puts corpora and the readers look."""
    env = os.environ.get("ULMFIT_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ulmfit"


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
