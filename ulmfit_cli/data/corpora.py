"""The corpus parsers: one small `read_*` per format that only parses its files into `Split`s.

WikiText, IMDb, TREC, the Zhang et al. CSVs (AG News, DBpedia, Yelp), the user's own tables
(csv/jsonl) and Hugging Face datasets; `READERS` maps each `dataset.name` to its parser. What the
corpora share (normalising, carving, caps) happens afterwards, in splits.finish.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ulmfit_cli.data.file_index import code_id, remembered, source_id
from ulmfit_cli.data.file_texts import FileTexts, scan_lines
from ulmfit_cli.data.formats import (columns_split, decode, join_fields, parse_frame, read_bytes,
                                     table_file, warn_undecodable)
from ulmfit_cli.data.splits import Raw, Split
from ulmfit_cli.errors import UserError


def _download_hint(cfg: Any) -> str:
    name = cfg.name
    if name in ("csv", "jsonl"):
        return (
            "Check dataset.train_file= / dataset.valid_file= / dataset.test_file= "
            "(relative paths are resolved against dataset.data_dir=, else the current folder)."
        )
    return (
        f"Run `ulmfit download {name}`, or point dataset.data_dir= at a folder holding the files "
        "(or name them with dataset.train_file= / dataset.test_file=)."
    )


def _require_dir(directory: Path, cfg: Any, expected: str) -> None:
    if not directory.is_dir():
        raise UserError(
            f"Dataset folder {directory} for dataset {cfg.name!r} does not exist (expected {expected}).",
            _download_hint(cfg),
        )


def resolve(base: Path | None, name: str | None) -> Path | None:
    if not name:
        return None
    path = Path(name).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path


def require_file(path: Path, cfg: Any, key: str) -> Path:
    if not path.is_file():
        raise UserError(
            f"File {path} ({key} of dataset {cfg.name!r}) does not exist.",
            _download_hint(cfg),
        )
    return path


def _first_existing(directory: Path, names: list[str]) -> Path | None:
    for n in names:
        if (directory / n).is_file():
            return directory / n
    return None


def user_base(cfg: Any) -> Path | None:
    """Where the user's own relative paths start: dataset.data_dir if set, else the cwd (None)."""
    base = Path(cfg.data_dir).expanduser() if cfg.data_dir else None
    if base is not None and not base.is_dir():
        raise UserError(
            f"Folder {base} (dataset.data_dir) does not exist.", "Fix dataset.data_dir= or drop it and give full paths."
        )
    return base


# A top-level heading is ` = Title = `; ` = = Section = = ` and deeper stay inside the article.
_WIKI_HEADING = re.compile(r"^ ?= [^=].*[^=] = ?$|^ ?= [^=] = ?$")
# The same over a line's UTF-8 bytes ("=" is one byte and never part of another character's).
_WIKI_HEADING_BYTES = re.compile(rb"^ ?= [^=].*[^=] = ?$|^ ?= [^=] = ?$")


def _wiki_articles(text: str) -> list[str]:
    """The articles of a WikiText file, each joined as soon as the next heading ends it (joining
    them all at the end would hold every line twice: a large corpus's peak memory)."""
    articles: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if _WIKI_HEADING.match(line) and current:
            articles.append("\n".join(current))
            current = []
        current.append(line.strip())
    if current:
        articles.append("\n".join(current))
    return articles


def wiki_article(text: str) -> str:
    """One article's lines as `_wiki_articles` joins them: stripped, blank ones left out."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def _wiki_file_articles(path: Path, warnings: list[str], index_dir: Path | None = None) -> FileTexts:
    """`_wiki_articles` of an uncompressed file, as documents read from it when they are used.
    Where they are is kept in `index_dir` (see file_index): a second run does not read the file to
    find them."""
    parts = (b"wiki-articles", code_id(_wiki_file_articles), source_id(FileTexts.__module__))  # the scan's
    st, found = remembered(index_dir, path, parts, lambda st: _find_wiki_articles(path, (st.st_size, st.st_mtime_ns)))
    if found["bad"]:
        warn_undecodable(path, int(found["bad"]), warnings)
    return FileTexts(path, found["starts"], found["ends"], wiki_article, all_nonblank=True,
                     stamp=(st.st_size, st.st_mtime_ns))


def _find_wiki_articles(path: Path, stamp: tuple[int, int]) -> dict[str, np.ndarray]:
    """Each article's byte span in the file, and how many lines are not valid UTF-8."""
    starts, first, size, bad = scan_lines(path, lambda line: bool(_WIKI_HEADING_BYTES.match(line)),
                                          rb"\n ?= [^\n]*")
    starts = np.unique(np.concatenate([[first], starts]))
    texts = FileTexts(path, starts, np.append(starts[1:], size), wiki_article, stamp=stamp)
    if len(texts) and not texts[0]:  # only blank lines before the first heading
        texts = texts[1:]
    return {"starts": texts.starts, "ends": texts.ends, "bad": np.int64(bad)}


def _read_wikitext(cfg: Any, directory: Path, index_dir: Path | None = None) -> Raw:
    name = cfg.name
    warnings: list[str] = []
    _require_dir(directory, cfg, "wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens")

    def split(stem: str) -> Split | None:
        path = _first_existing(directory, [f"wiki.{stem}.tokens", f"wiki.{stem}.tokens.gz"])
        if path is None:
            return None
        if not path.name.endswith(".gz"):
            return Split(_wiki_file_articles(path, warnings, index_dir), None, str(path))
        return Split(_wiki_articles(decode(read_bytes(path), path, warnings)), None, str(path))

    train, valid, test = split("train"), split("valid"), split("test")
    if train is None:
        if valid is None and test is None:
            raise UserError(
                f"No WikiText files (wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens) in {directory}.",
                f"Run `ulmfit download {name}` or point dataset.data_dir= at the folder holding them.",
            )
        # Only valid/test are available in small offline copies; a smaller corpus beats no corpus.
        parts = [s for s in (valid, test) if s is not None]
        train = Split([t for s in parts for t in s.texts], None, " + ".join(s.source for s in parts))
        valid = test = None
        warnings.append(
            f"{directory / 'wiki.train.tokens'} is missing: using the articles of "
            f"{' and '.join(Path(s.source).name for s in parts)} ({len(train.texts)} articles) as the corpus "
            f"and carving valid and test from them (valid_frac={cfg.valid_frac}, "
            f"split_seed={cfg.split_seed}). Run `ulmfit download {name}` for the full training set."
        )
    return Raw(train, valid, test, warnings=warnings)


def _imdb_csv(path: Path, warnings: list[str], labelled: bool) -> Split:
    frame = parse_frame(path, decode(read_bytes(path), path, warnings), sep=",", header=0)
    needed = ["label", "text"] if labelled else ["text"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise UserError(
            f"{path} has no column(s) {missing}; its columns are {list(frame.columns)}.",
            "IMDb CSVs need the header id,label,rating,text (re-run `ulmfit download imdb`).",
        )
    labels = frame["label"].tolist() if labelled else None
    return Split(frame["text"].tolist(), labels, str(path))


def _imdb_folder(folder: Path, warnings: list[str], labelled: bool) -> Split:
    texts: list[str] = []
    labels: list[str] = []
    bad = 0
    for label in ("neg", "pos") if labelled else ("unsup",):
        for f in sorted((folder / label).glob("*.txt")):
            raw = f.read_bytes()
            try:
                texts.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                bad += 1
                texts.append(raw.decode("utf-8", errors="replace"))
            labels.append(label)
    if bad:
        warnings.append(f"{folder}: {bad} review file(s) were not valid UTF-8; bad bytes were replaced by U+FFFD.")
    return Split(texts, labels if labelled else None, str(folder))


def _read_imdb(cfg: Any, directory: Path, index_dir: Path | None = None) -> Raw:
    _require_dir(directory, cfg, "train.csv.gz/test.csv.gz/unsup.csv.gz or an aclImdb folder")
    warnings: list[str] = []
    use_unsup = bool(cfg.use_unsup)

    train_csv = _first_existing(directory, ["train.csv.gz", "train.csv"])
    if train_csv is not None:
        test_csv = _first_existing(directory, ["test.csv.gz", "test.csv"])
        unsup_csv = _first_existing(directory, ["unsup.csv.gz", "unsup.csv"])
        train = _imdb_csv(train_csv, warnings, True)
        test = _imdb_csv(test_csv, warnings, True) if test_csv else None
        unsup = _imdb_csv(unsup_csv, warnings, False).texts if (use_unsup and unsup_csv) else []
        if use_unsup and unsup_csv is None:
            warnings.append(f"No unsup.csv.gz in {directory}: LM fine-tuning gets no unlabelled reviews.")
        return Raw(train, None, test, lm_extra=unsup, warnings=warnings)

    # The original tarball unpacks to aclImdb/; accept that folder or its parent.
    root = directory if (directory / "train" / "pos").is_dir() else directory / "aclImdb"
    if not (root / "train" / "pos").is_dir():
        raise UserError(
            f"No IMDb data in {directory}: expected train.csv.gz (and test.csv.gz, unsup.csv.gz) "
            "or an aclImdb folder with train/pos, train/neg, test/pos, test/neg.",
            "Run `ulmfit download imdb` or point dataset.data_dir= at the folder holding them.",
        )
    train = _imdb_folder(root / "train", warnings, True)
    test = _imdb_folder(root / "test", warnings, True) if (root / "test" / "pos").is_dir() else None
    unsup = _imdb_folder(root / "train", warnings, False).texts if use_unsup else []
    return Raw(train, None, test, lm_extra=unsup, warnings=warnings)


def _trec_text(raw: bytes) -> str:
    """The official train file is Latin-1; a UTF-8 re-encoded copy must not turn into mojibake."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _trec_file(path: Path) -> Split:
    texts, labels = [], []
    for n, line in enumerate(_trec_text(read_bytes(path)).splitlines(), 1):
        if not line.strip():
            continue
        head, _, text = line.partition(" ")
        coarse, colon, _fine = head.partition(":")
        if not colon:
            raise UserError(
                f"{path} line {n} is not `COARSE:fine question` (got {line[:60]!r}).",
                "Use the original TREC files (train_5500.label, TREC_10.label), e.g. via `ulmfit download trec6`.",
            )
        texts.append(text.strip())
        labels.append(coarse)
    return Split(texts, labels, str(path))


def _read_trec(cfg: Any, directory: Path, index_dir: Path | None = None) -> Raw:
    _require_dir(directory, cfg, "train_5500.label and TREC_10.label")
    train = _trec_file(require_file(resolve(directory, cfg.train_file or "train_5500.label"), cfg, "train"))
    valid_path = resolve(directory, cfg.valid_file)
    valid = _trec_file(require_file(valid_path, cfg, "valid")) if valid_path else None
    test_path = resolve(directory, cfg.test_file or "TREC_10.label")
    test = _trec_file(test_path) if test_path.is_file() else None
    return Raw(train, valid, test)


def unescape_ag(text: str) -> str:
    """AG News writes a line break as a lone backslash (`second\\team`, `social\\network`) and
    escapes `$` as `\\$`. Reading `\\n` as the escape (as readme.txt says) would eat the `n` of
    `network`, so every backslash but the dollar escape becomes a newline."""
    return text.replace("\\$", "$").replace("\\", "\n")


def unescape_zhang(text: str) -> str:
    """DBpedia and Yelp follow readme.txt literally: `\\n` is a newline and `\\"` a quote."""
    return text.replace("\\n", "\n").replace('\\"', '"')


def class_names(directory: Path) -> list[str] | None:
    path = directory / "classes.txt"
    if not path.is_file():
        return None
    return [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]


def zhang_file(path: Path, cfg: Any, warnings: list[str], names: list[str] | None, unescape) -> Split:
    frame = parse_frame(path, decode(read_bytes(path), path, warnings), sep=",", header=None)
    if frame.shape[1] < 2:
        raise UserError(
            f"{path} has {frame.shape[1]} column(s); a Zhang et al. CSV needs `\"class\",\"text\",...`.",
            _download_hint(cfg),
        )
    labels = []
    for value in frame[0].tolist():
        value = str(value).strip()
        if names is not None:
            if not value.isdigit() or not 1 <= int(value) <= len(names):
                raise UserError(
                    f"{path}: class {value!r} is not a number from 1 to {len(names)} (classes.txt lists {len(names)}).",
                    "Check the file and classes.txt come from the same dataset.",
                )
            value = names[int(value) - 1]
        labels.append(value)
    columns = [frame[c].tolist() for c in frame.columns[1:]]
    texts = [join_fields([unescape(f) for f in row]) for row in zip(*columns)]
    return Split(texts, labels, str(path))


def _read_zhang(cfg: Any, directory: Path, index_dir: Path | None = None) -> Raw:
    name = cfg.name
    _require_dir(directory, cfg, "train.csv and test.csv")
    warnings: list[str] = []
    unescape = unescape_ag if name == "ag_news" else unescape_zhang
    names = class_names(directory) if name == "ag_news" else None
    train_path = resolve(directory, cfg.train_file or "train.csv")
    test_path = resolve(directory, cfg.test_file or "test.csv")
    if not train_path.is_file():
        have = f" ({test_path.name} is there, the training file is not)" if test_path.is_file() else ""
        raise UserError(
            f"Training file {train_path} of dataset {name!r} is missing{have}.",
            f"Run `ulmfit download {name}`, or name another file with dataset.train_file=.",
        )
    train = zhang_file(train_path, cfg, warnings, names, unescape)
    valid_path = resolve(directory, cfg.valid_file)
    valid = None
    if valid_path:
        valid = zhang_file(require_file(valid_path, cfg, "valid_file"), cfg, warnings, names, unescape)
    test = zhang_file(test_path, cfg, warnings, names, unescape) if test_path.is_file() else None
    return Raw(train, valid, test, warnings=warnings)


def _read_table(cfg: Any, directory: Path, index_dir: Path | None = None) -> Raw:
    # For csv/jsonl the folder is only a base for relative paths: without data_dir use the cwd.
    base = user_base(cfg)
    train_name = cfg.train_file
    if not train_name:
        raise UserError(
            f"Dataset {cfg.name!r} needs a training file, and dataset.train_file is not set.",
            "Add dataset.train_file=path/to/train.csv (relative paths are resolved against dataset.data_dir).",
        )
    warnings: list[str] = []
    splits = {}
    for key in ("train_file", "valid_file", "test_file"):
        path = resolve(base, getattr(cfg, key))
        if path is not None:
            path = require_file(path, cfg, f"dataset.{key}")
        splits[key] = table_file(path, cfg, warnings, f"dataset.{key}") if path else None
    return Raw(splits["train_file"], splits["valid_file"], splits["test_file"], warnings=warnings)


def _read_hf(cfg: Any, directory: Path, index_dir: Path | None = None) -> Raw:
    """dataset=hf: a Hugging Face dataset; its columns are joined and checked as a CSV's are."""
    if not cfg.path:
        raise UserError(
            "dataset=hf needs dataset.path, and it is not set.",
            "Add dataset.path=<a Hugging Face hub name, e.g. imdb> or "
            "dataset.path=<a folder written by save_to_disk>.",
        )
    # Imported here: `datasets` is an optional extra and slow to import, so only dataset=hf pays.
    from ulmfit_cli.data.hf import hf_tables

    tables = hf_tables(str(cfg.path), cfg.subset, cfg.split_map, user_base(cfg))
    splits = {key: columns_split(t.source, t.columns, t.get, cfg, labelled=key != "lm") for key, t in tables.items()}
    use_lm = "lm" in splits and bool(cfg.use_unsup)
    return Raw(splits["train"], splits.get("valid"), splits.get("test"),
                lm_extra=splits["lm"].texts if use_lm else None)


# Each reader is called as reader(cfg, corpus folder, index folder or None): the index folder is where
# a reader may keep what it learned about a large file (file_index.py); only WikiText's uses it.
READERS: dict[str, Callable[[Any, Path, Path | None], Raw]] = {
    "wikitext2": _read_wikitext,
    "wikitext103": _read_wikitext,
    "imdb": _read_imdb,
    "trec6": _read_trec,
    "ag_news": _read_zhang,
    "dbpedia": _read_zhang,
    "yelp_bi": _read_zhang,
    "yelp_full": _read_zhang,
    "csv": _read_table,
    "jsonl": _read_table,
    "hf": _read_hf,
}
