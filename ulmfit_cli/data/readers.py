"""Corpus readers: turn the files of one dataset on disk into a `TextDataset`.

Each format has one small `_read_*` function that only parses files into `_Split`s. Everything
the formats share (dropping empty rows, carving valid/test out of train, caps, class lists, the
checks and warnings) happens once, in `_finish`, so every corpus behaves the same way.
Bad input raises `UserError` naming the file or key and the fix; recoverable oddities
(undecodable bytes, empty rows, labels unseen in train) become strings in `TextDataset.warnings`.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ulmfit_cli.data.types import TextDataset
from ulmfit_cli.errors import UserError

__all__ = ["default_data_root", "load_dataset"]

# fastai's field marker: lets the model tell title from body when several columns form one text.
FIELD_MARKER = "xxfld"


def default_data_root() -> Path:
    """`$ULMFIT_DATA` if set, else `~/.cache/ulmfit` (where `ulmfit download` puts corpora)."""
    env = os.environ.get("ULMFIT_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ulmfit"


@dataclass
class _Split:
    """One split as read from disk; `source` is what error messages and warnings name."""

    texts: list[str]
    labels: list | None
    source: str


@dataclass
class _Raw:
    """What a reader found. A split left None is carved out of train by `_finish`."""

    train: _Split
    valid: _Split | None = None
    test: _Split | None = None
    lm_extra: list[str] | None = None
    warnings: list[str] | None = None


def load_dataset(cfg: Any, data_root: str | os.PathLike | None = None, lm_files: bool = True) -> TextDataset:
    """Read the corpus `cfg.name` (a DatasetConfig or a DictConfig with the same fields).
    `lm_files=False` skips dataset.lm_files, for callers that never use `lm_extra`."""
    name = cfg.name
    if name == "sample":
        # Imported here so the readers do not depend on the synthetic generator, and vice versa.
        from ulmfit_cli.data.sample import generate_sample

        data = generate_sample(cfg)
        cap = cfg.max_docs
        extra = _read_lm_files(cfg, data.warnings) if lm_files else []
        data.lm_extra = (data.lm_extra + extra)[: int(cap) if cap else None]
        return data
    reader = _READERS.get(name)
    if reader is None:
        raise UserError(
            f"Unknown dataset name {name!r} (dataset.name).",
            f"Use one of: sample, {', '.join(sorted(_READERS))}.",
        )
    _check_numbers(cfg)
    raw = reader(cfg, _dataset_dir(cfg, data_root))
    raw.warnings = list(raw.warnings or [])
    raw.lm_extra = list(raw.lm_extra or []) + (_read_lm_files(cfg, raw.warnings) if lm_files else [])
    return _finish(cfg, raw)


# --------------------------------------------------------------------------- paths and bytes


def _dataset_dir(cfg: Any, data_root: str | os.PathLike | None) -> Path:
    data_dir = cfg.data_dir
    if data_dir:
        return Path(data_dir).expanduser()
    root = Path(data_root).expanduser() if data_root else default_data_root()
    return root / cfg.name


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


def _resolve(base: Path | None, name: str | None) -> Path | None:
    if not name:
        return None
    path = Path(name).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path


def _require_file(path: Path, cfg: Any, key: str) -> Path:
    if not path.is_file():
        raise UserError(
            f"File {path} ({key} of dataset {cfg.name!r}) does not exist.",
            _download_hint(cfg),
        )
    return path


def _read_bytes(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:
        raise UserError(f"Cannot read {path}: {exc}.", "Check the file is complete (re-download it).") from exc


def _decode(raw: bytes, path: Path, warnings: list[str]) -> str:
    """UTF-8, but never fail on a stray byte: replace it and report how many lines were hit."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    bad = 0
    for line in raw.split(b"\n"):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad += 1
    warnings.append(
        f"{path}: {bad} line(s) held bytes that are not valid UTF-8; they were replaced by U+FFFD. "
        "Re-encode the file as UTF-8 to keep those characters."
    )
    return raw.decode("utf-8-sig", errors="replace")


def _first_existing(directory: Path, names: list[str]) -> Path | None:
    for n in names:
        if (directory / n).is_file():
            return directory / n
    return None


# --------------------------------------------------------------------------- WikiText

# A top-level heading is ` = Title = `; ` = = Section = = ` and deeper stay inside the article.
_WIKI_HEADING = re.compile(r"^ ?= [^=].*[^=] = ?$|^ ?= [^=] = ?$")


def _wiki_articles(text: str) -> list[str]:
    articles: list[list[str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if _WIKI_HEADING.match(line) or not articles:
            articles.append([])
        articles[-1].append(line.strip())
    return ["\n".join(lines) for lines in articles]


def _read_wikitext(cfg: Any, directory: Path) -> _Raw:
    name = cfg.name
    warnings: list[str] = []
    _require_dir(directory, cfg, "wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens")

    def split(stem: str) -> _Split | None:
        path = _first_existing(directory, [f"wiki.{stem}.tokens", f"wiki.{stem}.tokens.gz"])
        if path is None:
            return None
        return _Split(_wiki_articles(_decode(_read_bytes(path), path, warnings)), None, str(path))

    train, valid, test = split("train"), split("valid"), split("test")
    if train is None:
        if valid is None and test is None:
            raise UserError(
                f"No WikiText files (wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens) in {directory}.",
                f"Run `ulmfit download {name}` or point dataset.data_dir= at the folder holding them.",
            )
        # Only valid/test are available in small offline copies; a smaller corpus beats no corpus.
        parts = [s for s in (valid, test) if s is not None]
        train = _Split([t for s in parts for t in s.texts], None, " + ".join(s.source for s in parts))
        valid = test = None
        warnings.append(
            f"{directory / 'wiki.train.tokens'} is missing: using the articles of "
            f"{' and '.join(Path(s.source).name for s in parts)} ({len(train.texts)} articles) as the corpus "
            f"and carving valid and test from them (valid_frac={cfg.valid_frac}, "
            f"split_seed={cfg.split_seed}). Run `ulmfit download {name}` for the full training set."
        )
    return _Raw(train, valid, test, warnings=warnings)


# --------------------------------------------------------------------------- IMDb


def _imdb_csv(path: Path, warnings: list[str], labelled: bool) -> _Split:
    frame = _parse_frame(path, _decode(_read_bytes(path), path, warnings), sep=",", header=0)
    needed = ["label", "text"] if labelled else ["text"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise UserError(
            f"{path} has no column(s) {missing}; its columns are {list(frame.columns)}.",
            "IMDb CSVs need the header id,label,rating,text (re-run `ulmfit download imdb`).",
        )
    labels = frame["label"].tolist() if labelled else None
    return _Split(frame["text"].tolist(), labels, str(path))


def _imdb_folder(folder: Path, warnings: list[str], labelled: bool) -> _Split:
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
    return _Split(texts, labels if labelled else None, str(folder))


def _read_imdb(cfg: Any, directory: Path) -> _Raw:
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
        return _Raw(train, None, test, lm_extra=unsup, warnings=warnings)

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
    return _Raw(train, None, test, lm_extra=unsup, warnings=warnings)


# --------------------------------------------------------------------------- TREC


def _trec_text(raw: bytes) -> str:
    """The official train file is Latin-1; a UTF-8 re-encoded copy must not turn into mojibake."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _trec_file(path: Path) -> _Split:
    texts, labels = [], []
    for n, line in enumerate(_trec_text(_read_bytes(path)).splitlines(), 1):
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
    return _Split(texts, labels, str(path))


def _read_trec(cfg: Any, directory: Path) -> _Raw:
    _require_dir(directory, cfg, "train_5500.label and TREC_10.label")
    train = _trec_file(_require_file(_resolve(directory, cfg.train_file or "train_5500.label"), cfg, "train"))
    valid_path = _resolve(directory, cfg.valid_file)
    valid = _trec_file(_require_file(valid_path, cfg, "valid")) if valid_path else None
    test_path = _resolve(directory, cfg.test_file or "TREC_10.label")
    test = _trec_file(test_path) if test_path.is_file() else None
    return _Raw(train, valid, test)


# --------------------------------------------------------------------------- Zhang et al. CSVs


def _unescape_ag(text: str) -> str:
    """AG News writes a line break as a lone backslash (`second\\team`, `social\\network`) and
    escapes `$` as `\\$`. Reading `\\n` as the escape (as readme.txt says) would eat the `n` of
    `network`, so every backslash but the dollar escape becomes a newline."""
    return text.replace("\\$", "$").replace("\\", "\n")


def _unescape_zhang(text: str) -> str:
    """DBpedia and Yelp follow readme.txt literally: `\\n` is a newline and `\\"` a quote."""
    return text.replace("\\n", "\n").replace('\\"', '"')


def _join_fields(fields: list[str]) -> str:
    """fastai's convention: several fields become `xxfld 1 <a> xxfld 2 <b>`; one field stays plain."""
    fields = ["" if f is None else str(f) for f in fields]
    if len(fields) == 1:
        return fields[0]
    if not any(f.strip() for f in fields):
        return ""
    return " ".join(f"{FIELD_MARKER} {i} {f}" for i, f in enumerate(fields, 1))


def _class_names(directory: Path) -> list[str] | None:
    path = directory / "classes.txt"
    if not path.is_file():
        return None
    return [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]


def _zhang_file(path: Path, cfg: Any, warnings: list[str], names: list[str] | None, unescape) -> _Split:
    frame = _parse_frame(path, _decode(_read_bytes(path), path, warnings), sep=",", header=None)
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
    texts = [_join_fields([unescape(f) for f in row]) for row in zip(*columns)]
    return _Split(texts, labels, str(path))


def _read_zhang(cfg: Any, directory: Path) -> _Raw:
    name = cfg.name
    _require_dir(directory, cfg, "train.csv and test.csv")
    warnings: list[str] = []
    unescape = _unescape_ag if name == "ag_news" else _unescape_zhang
    names = _class_names(directory) if name == "ag_news" else None
    train_path = _resolve(directory, cfg.train_file or "train.csv")
    test_path = _resolve(directory, cfg.test_file or "test.csv")
    if not train_path.is_file():
        have = f" ({test_path.name} is there, the training file is not)" if test_path.is_file() else ""
        raise UserError(
            f"Training file {train_path} of dataset {name!r} is missing{have}.",
            f"Run `ulmfit download {name}`, or name another file with dataset.train_file=.",
        )
    train = _zhang_file(train_path, cfg, warnings, names, unescape)
    valid_path = _resolve(directory, cfg.valid_file)
    valid = None
    if valid_path:
        valid = _zhang_file(_require_file(valid_path, cfg, "valid_file"), cfg, warnings, names, unescape)
    test = _zhang_file(test_path, cfg, warnings, names, unescape) if test_path.is_file() else None
    return _Raw(train, valid, test, warnings=warnings)


# --------------------------------------------------------------------------- csv / tsv / jsonl


def _parse_frame(path: Path, text: str, sep: str, header: int | None) -> pd.DataFrame:
    """pandas' C parser: the 50k-row IMDb files take a second instead of a minute with `csv`.
    Everything is read as text and nothing is turned into NaN, so a review saying "NA" survives."""
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=sep,
            header=header,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            # GLUE-style TSVs never quote, and a lone `"` in a sentence must not swallow lines.
            quoting=3 if sep == "\t" else 0,
        )
    except pd.errors.EmptyDataError as exc:
        raise UserError(f"{path} is empty.", "Give a file with a header line and at least one row.") from exc
    except pd.errors.ParserError as exc:
        raise UserError(
            f"{path} is not a well-formed {_table_kind(sep)} file: {exc}.",
            "Fix the quoting/column count, or name the right file with dataset.train_file=.",
        ) from exc
    if header is not None:
        _check_separator(path, frame, sep)
    return frame


def _table_kind(sep: str) -> str:
    return "TSV" if sep == "\t" else "CSV"


_SEPARATORS = {";": "semicolon", "\t": "tab", "|": "pipe", ",": "comma"}


def _check_separator(path: Path, frame: pd.DataFrame, sep: str) -> None:
    """A file saved with another separator (a European spreadsheet's `;`) parses as one column whose
    name holds the real header; say so rather than ask for a column named `text;label`."""
    if len(frame.columns) != 1:
        return
    header = str(frame.columns[0])
    other = next((c for c in _SEPARATORS if c != sep and c in header), None)
    if other is None:
        return
    kind, name = _table_kind(sep), _SEPARATORS
    renamed = {"\t": ".tsv", ",": ".csv"}.get(other)
    tab = ", sep='\\t'" if sep == "\t" else ""
    fix = (f"Rename it to {renamed} ({renamed}.gz if gzipped)" if renamed else f"Save it {name[sep]}-separated "
           f"(pandas: pd.read_csv(path, sep={other!r}).to_csv(new_path, index=False{tab}))")
    raise UserError(
        f"{path} reads as a {kind} with one column named {header!r}: its header looks {name[other]}-separated, "
        f"and a {kind} file is read as {name[sep]}-separated.",
        f"{fix}, then run again.",
    )


def _text_cols(cfg: Any) -> list[str]:
    cols = cfg.text_cols or ["text"]
    return [cols] if isinstance(cols, str) else [str(c) for c in cols]


def _missing_column(path: Path | str, column: str, present: list, key: str, example: str) -> UserError:
    return UserError(
        f"{path} has no column {column!r}; its columns are {[str(c) for c in present]}.",
        f"Name the right one with {key}={example}.",
    )


# What a file's name says it holds; `.gz` may follow any of the text formats.
_TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
_FORMATS_HINT = ".csv, .tsv, .jsonl or .parquet (the text ones may be .gz)"


def _looks_binary(path: Path) -> bool:
    try:
        with (gzip.open if path.name.endswith(".gz") else open)(path, "rb") as fh:
            return b"\x00" in fh.read(8192)
    except (OSError, EOFError):
        return False  # unreadable: the reader names the file and the problem


def _suffix(path: Path) -> str:
    """The file name's format suffix, lower case, with a trailing `.gz` left off."""
    name = path.name.lower()
    return Path(name[:-3] if name.endswith(".gz") else name).suffix


def _table_format(path: Path) -> str | None:
    """csv | tsv | jsonl | parquet from the file name (a gzipped Parquet file is none of them)."""
    parquet_gz = path.name.lower().endswith(".parquet.gz")
    return None if parquet_gz else _TABLE_FORMATS.get(_suffix(path))


def _file_format(path: Path, cfg: Any, key: str, lm: bool = False) -> str:
    """csv | tsv | jsonl | parquet (| txt for lm_files), from the file name. A labelled file
    with another name is read as its dataset's format, as it always was; a binary one (a
    spreadsheet, an archive) would only parse into garbage, so it is refused."""
    if (fmt := _table_format(path)) is not None:
        return fmt
    suffix = _suffix(path)
    if lm and suffix == ".txt":
        return "txt"
    if not lm and not _looks_binary(path):
        return "jsonl" if cfg.name == "jsonl" else "csv"
    lm_hint = ", .txt (one document per line) or a folder of .txt files" if lm else ""
    raise UserError(
        f"{path} ({key}) is not in a format ulmfit reads ({suffix or 'no extension'}).",
        f"Give a {_FORMATS_HINT} file{lm_hint}; save a spreadsheet as CSV first.",
    )


def open_parquet(path: Path) -> tuple[list[str], Callable[[str], list]]:
    """A Parquet file's column names and a reader of one column (Python values, None for nulls).
    Columns are read one at a time: Parquet stores them apart, so unused ones cost nothing."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise UserError(
            f"{path} is a Parquet file, and reading Parquet needs the pyarrow package, which is not installed.",
            "Install it with pip install -e '.[formats]' (or pip install 'pyarrow>=14'), or convert the file to CSV.",
        ) from exc
    try:
        names = [str(n) for n in pq.read_schema(path).names]
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise UserError(f"{path} is not a readable Parquet file ({exc}).", "Check the file is complete.") from exc
    return names, lambda col: pq.read_table(path, columns=[col]).column(col).to_pylist()


def _table_columns(path: Path, fmt: str, warnings: list[str]) -> tuple[list, Callable[[str], list]]:
    """The columns of a csv/tsv/jsonl/parquet file and a getter for one column's values."""
    if fmt == "parquet":
        return open_parquet(path)
    content = _decode(_read_bytes(path), path, warnings)
    if fmt == "jsonl":
        rows = _jsonl_rows(path, content)
        return list(rows[0].keys()), lambda col: [row.get(col) for row in rows]
    frame = _parse_frame(path, content, sep="\t" if fmt == "tsv" else ",", header=0)
    if frame.empty:
        raise UserError(f"{path} has a header but no rows.", "Give a file with at least one row.")
    # GLUE-style headers may carry stray spaces (`sentence \t label`).
    frame.columns = [str(c).strip() for c in frame.columns]
    return list(frame.columns), lambda col: frame[col].tolist()


def read_text_columns(path: Path, columns: list[str], key: str) -> list[str] | None:
    """The texts of a .csv/.tsv/.jsonl/.parquet file (the text ones may be .gz), `columns` joined as
    training joins dataset.text_cols, nulls as ""; every row kept, so outputs line up with the file.
    None for a file of another format. `key` is the setting that names the column, for the error."""
    fmt = _table_format(path)
    if fmt is None:
        return None
    present, get_col = _table_columns(path, fmt, [])
    for column in columns:
        if column not in present:
            raise _missing_column(path, column, present, key,
                                  _likeliest_text_column(present, get_col) if present else "...")
    return [_join_fields(list(row)) for row in zip(*(get_col(c) for c in columns))]


DATASET_KEYS = ("dataset.text_cols", "dataset.label_col")


def _columns_split(source: str, present: list, get_col: Callable[[str], list], cfg: Any,
                   labelled: bool = True, keys: tuple[str, str] = DATASET_KEYS) -> _Split:
    """Join `dataset.text_cols` into one text per row; labels from `dataset.label_col` if `labelled`.
    `keys` name the settings that choose the columns, for the errors."""
    text_cols, label_col = _text_cols(cfg), (cfg.label_col if labelled else None)
    for col in text_cols:
        if col not in present:
            best = _likeliest_text_column([c for c in present if c != label_col] or present, get_col)
            takes_list = keys[0].endswith("_cols")  # Hydra wants dataset.text_cols=[a]; evaluate's text_col=a
            raise _missing_column(source, col, present, keys[0], f"[{best}]" if takes_list else best)
    if label_col is not None and label_col not in present:
        others = [c for c in present if c not in text_cols]
        unlabelled = " (or null for an unlabelled LM corpus)" if keys[1] == "dataset.label_col" else ""
        raise _missing_column(source, label_col, present, keys[1], (others[0] if others else "...") + unlabelled)
    columns = [get_col(c) for c in text_cols]
    texts = [_join_fields(list(row)) for row in zip(*columns)]
    labels = get_col(label_col) if label_col is not None else None
    return _Split(texts, labels, source)


def _likeliest_text_column(candidates: list, get_col: Callable[[str], list]) -> str:
    """The column whose values are longest on average: text, rather than a label or an id."""
    def mean_len(c) -> float:
        values = get_col(c)
        return sum(len(str(v)) for v in values) / max(len(values), 1)
    return str(max(candidates, key=mean_len))


def _table_file(path: Path, cfg: Any, warnings: list[str], key: str, keys: tuple[str, str] = DATASET_KEYS) -> _Split:
    present, get_col = _table_columns(path, _file_format(path, cfg, key), warnings)
    return _columns_split(str(path), present, get_col, cfg, keys=keys)


def _jsonl_rows(path: Path, content: str) -> list[dict]:
    rows = []
    for n, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{path} line {n} is not valid JSON ({exc.msg}).", "A .jsonl file needs one JSON object per line."
            ) from exc
        if not isinstance(row, dict):
            raise UserError(
                f"{path} line {n} is a JSON {type(row).__name__}, not an object.", "Write one {...} object per line."
            )
        rows.append(row)
    if not rows:
        raise UserError(f"{path} is empty (no JSON objects).", "Give a file with one JSON object per line.")
    return rows


def _user_base(cfg: Any) -> Path | None:
    """Where the user's own relative paths start: dataset.data_dir if set, else the cwd (None)."""
    base = Path(cfg.data_dir).expanduser() if cfg.data_dir else None
    if base is not None and not base.is_dir():
        raise UserError(
            f"Folder {base} (dataset.data_dir) does not exist.", "Fix dataset.data_dir= or drop it and give full paths."
        )
    return base


def _read_table(cfg: Any, directory: Path) -> _Raw:
    # For csv/jsonl the folder is only a base for relative paths: without data_dir use the cwd.
    base = _user_base(cfg)
    train_name = cfg.train_file
    if not train_name:
        raise UserError(
            f"Dataset {cfg.name!r} needs a training file, and dataset.train_file is not set.",
            "Add dataset.train_file=path/to/train.csv (relative paths are resolved against dataset.data_dir).",
        )
    warnings: list[str] = []
    splits = {}
    for key in ("train_file", "valid_file", "test_file"):
        path = _resolve(base, getattr(cfg, key))
        if path is not None:
            path = _require_file(path, cfg, f"dataset.{key}")
        splits[key] = _table_file(path, cfg, warnings, f"dataset.{key}") if path else None
    return _Raw(splits["train_file"], splits["valid_file"], splits["test_file"], warnings=warnings)


def _read_hf(cfg: Any, directory: Path) -> _Raw:
    """dataset=hf: a Hugging Face dataset; its columns are joined and checked as a CSV's are."""
    if not cfg.path:
        raise UserError(
            "dataset=hf needs dataset.path, and it is not set.",
            "Add dataset.path=<a Hugging Face hub name, e.g. imdb> or "
            "dataset.path=<a folder written by save_to_disk>.",
        )
    # Imported here: `datasets` is an optional extra and slow to import, so only dataset=hf pays.
    from ulmfit_cli.data.hf import hf_tables

    tables = hf_tables(str(cfg.path), cfg.subset, cfg.split_map, _user_base(cfg))
    splits = {key: _columns_split(t.source, t.columns, t.get, cfg, labelled=key != "lm") for key, t in tables.items()}
    use_lm = "lm" in splits and bool(cfg.use_unsup)
    return _Raw(splits["train"], splits.get("valid"), splits.get("test"),
                lm_extra=splits["lm"].texts if use_lm else None)


# --------------------------------------------------------------------------- unlabelled LM text


def _txt_lines(path: Path, warnings: list[str]) -> list[str]:
    return [line.strip() for line in _decode(_read_bytes(path), path, warnings).splitlines() if line.strip()]


def _txt_folder(folder: Path, warnings: list[str]) -> list[str]:
    """One document per .txt file (IMDb's unsup/ layout), subfolders included, in path order."""
    texts, bad = [], 0
    for f in sorted(folder.rglob("*.txt")):
        raw = f.read_bytes()
        try:
            texts.append(raw.decode("utf-8-sig").strip())
        except UnicodeDecodeError:
            bad += 1
            texts.append(raw.decode("utf-8-sig", errors="replace").strip())
    if bad:
        warnings.append(f"{folder}: {bad} file(s) were not valid UTF-8; bad bytes were replaced by U+FFFD.")
    return texts


def _lm_file(path: Path, cfg: Any, warnings: list[str]) -> list[str]:
    if path.is_dir():
        return _txt_folder(path, warnings)
    fmt = _file_format(path, cfg, "in dataset.lm_files", lm=True)
    if fmt == "txt":
        return _txt_lines(path, warnings)
    present, get_col = _table_columns(path, fmt, warnings)
    missing = [c for c in _text_cols(cfg) if c not in present]
    if missing:
        raise UserError(
            f"{path} (in dataset.lm_files) has no column {missing[0]!r}; its columns are {[str(c) for c in present]}.",
            "lm_files tables are read with the same dataset.text_cols as the labelled files: "
            f"rename the column to {missing[0]!r}, or save the texts as .txt (one document per line).",
        )
    return _columns_split(str(path), present, get_col, cfg, labelled=False).texts


def _read_lm_files(cfg: Any, warnings: list[str]) -> list[str]:
    """The texts of dataset.lm_files, in the order given: unlabelled text that LM fine-tuning adds
    to the training text (like IMDb's unsup reviews), so `use_unsup=false` leaves them out."""
    names = cfg.lm_files or []
    names = [names] if isinstance(names, str) else list(names)
    if not names or not bool(cfg.use_unsup):
        return []
    base = _user_base(cfg)
    texts: list[str] = []
    for name in names:
        path = _resolve(base, str(name))
        if not path.exists():
            raise UserError(
                f"{path} (in dataset.lm_files) does not exist.",
                "Fix the entry of dataset.lm_files= (relative paths are resolved against dataset.data_dir=, "
                "else the current folder).",
            )
        docs = [t for t in _lm_file(path, cfg, warnings) if t is not None and str(t).strip()]
        if not docs:
            what = "no text (no .txt file with any)" if path.is_dir() else "no text"
            raise UserError(f"{path} (in dataset.lm_files) holds {what}.",
                            "Remove it from dataset.lm_files= or put documents in it.")
        texts.extend(str(t) for t in docs)
    return texts


# --------------------------------------------------------------------------- shared finishing


def _check_numbers(cfg: Any) -> None:
    frac = cfg.valid_frac
    if not 0 <= float(frac) < 0.5:
        raise UserError(
            f"dataset.valid_frac={frac} is out of range.", "Use a fraction in [0, 0.5), e.g. dataset.valid_frac=0.1."
        )
    for key in ("max_train_examples", "max_docs"):
        value = getattr(cfg, key)
        if value is not None and int(value) < 1:
            raise UserError(f"dataset.{key}={value} must be a positive number.", f"Use dataset.{key}=null for no cap.")


_FLOAT_INTEGER = re.compile(r"-?\d+\.0+")


def _label_name(label: Any) -> str:
    """A label as text. `1.0` is `1`: a label column with one empty cell is float to pandas and
    parquet, so one file says 1.0 where the others say 1, and they must be one class."""
    text = str(label).strip()
    return text.split(".")[0] if _FLOAT_INTEGER.fullmatch(text) else text


def _normalise(split: _Split, cfg: Any, warnings: list[str]) -> _Split:
    """Drop rows that cannot be trained on (empty text, missing label) and parse multi-labels."""
    multi, sep = bool(cfg.multi_label), str(cfg.label_sep)
    texts: list[str] = []
    labels: list | None = [] if split.labels is not None else None
    empty_text = empty_label = 0
    for i, text in enumerate(split.texts):
        text = "" if text is None else str(text)
        if not text.strip():
            empty_text += 1
            continue
        if labels is not None:
            label = split.labels[i]
            if multi:
                parts = label if isinstance(label, (list, tuple)) else ([] if label is None else str(label).split(sep))
                label = sorted({_label_name(p) for p in parts if str(p).strip()})
            else:
                label = "" if label is None else _label_name(label)
                if not label:
                    empty_label += 1
                    continue
            labels.append(label)
        texts.append(text)
    if empty_text:
        warnings.append(f"{split.source}: dropped {empty_text} row(s) with empty text.")
    if empty_label:
        warnings.append(f"{split.source}: dropped {empty_label} row(s) with an empty label.")
    if not texts:
        raise UserError(
            f"{split.source} holds no usable rows (no rows, or every text/label is empty).",
            "Check the file and dataset.text_cols= / dataset.label_col=.",
        )
    return _Split(texts, labels, split.source)


def _take(split: _Split, idx: list[int], source: str | None = None) -> _Split:
    labels = [split.labels[i] for i in idx] if split.labels is not None else None
    return _Split([split.texts[i] for i in idx], labels, source or split.source)


def _carve(train: _Split, n: int, what: str) -> tuple[_Split, _Split]:
    """The first n rows of the shuffled train split become `what`; the rest stay train."""
    head = _take(train, list(range(n)), f"{train.source} (carved {what})")
    return head, _take(train, list(range(n, len(train.texts))))


def _subset(split: _Split, n: int | None, seed: int) -> _Split:
    """A seeded random subset kept in file order: a sorted file (IMDb: all neg, then all pos)
    must not turn into one class when capped."""
    if n is None or len(split.texts) <= n:
        return split
    return _take(split, sorted(random.Random(seed).sample(range(len(split.texts)), n)))


def _label_set(labels: list) -> set[str]:
    out: set[str] = set()
    for label in labels:
        out.update(label) if isinstance(label, list) else out.add(label)
    return out


def _split_three_ways(train: _Split, valid: _Split | None, test: _Split | None, seed: int,
                      frac: float) -> tuple[_Split, _Split, _Split]:
    """Shuffle train once with split_seed (so carving and max_train_examples take random rows, the
    same every time), then carve the splits the dataset does not have from it."""
    order = list(range(len(train.texts)))
    random.Random(seed).shuffle(order)
    train = _take(train, order)
    n_carve = int(round(len(order) * frac))
    if frac > 0:
        n_carve = max(1, n_carve)
    carves = (valid is None) + (test is None)
    if carves and len(order) - carves * n_carve < 1:
        raise UserError(
            f"{train.source} has only {len(order)} usable row(s), too few to carve valid/test with valid_frac={frac}.",
            "Add rows, or give dataset.valid_file= / dataset.test_file=.",
        )
    if valid is None:
        valid, train = _carve(train, n_carve, "valid")
    if test is None:
        test, train = _carve(train, n_carve, "test")
    return train, valid, test


def _classes(source: str, train: _Split, valid: _Split, test: _Split, warnings: list[str]) -> list[str]:
    """The classes of the whole train split (before the caps, so a quick capped run keeps the same
    label set and indices as the full one); labels only valid/test have are a warning."""
    if train.labels is None:
        return []
    classes = sorted(_label_set(train.labels))
    if len(classes) < 2:
        raise UserError(
            f"The labels of {source} hold only {len(classes)} class(es) {classes}; a classifier needs two or more.",
            "Check dataset.label_col= names the label column (or set it to null for an unlabelled LM corpus).",
        )
    for split, what in ((valid, "valid"), (test, "test")):
        _warn_unseen(split, what, classes, warnings)
    return classes


def _warn_unseen(split: _Split, what: str, classes: list[str], warnings: list[str]) -> None:
    if split.labels is None:
        return
    known = set(classes)
    unseen = [lab for lab in split.labels if not _label_set([lab]) <= known]
    if unseen:
        names = sorted(_label_set(unseen) - known)
        more = f" (and {len(names) - 5} more)" if len(names) > 5 else ""
        how = ("those labels are left out of the scores" if isinstance(unseen[0], (list, tuple)) else
               "these rows count as errors in accuracy and are left out of the loss")
        warnings.append(f"{split.source}: {len(unseen)} {what} row(s) carry labels not seen in train: "
                        f"{names[:5]}{more}; {how}.")


def read_labelled_file(path: Path, cfg: Any, classes: list[str], key: str,
                       keys: tuple[str, str]) -> tuple[list[str], list, list[str]]:
    """(texts, labels, warnings) of one labelled table read as the dataset `cfg` reads its files
    (text_cols joined, label_col, multi-labels split on label_sep); labels outside `classes` warn.
    `key` names the setting that gave the file, `keys` those that name its columns."""
    warnings: list[str] = []
    split = _normalise(_table_file(path, cfg, warnings, key, keys), cfg, warnings)
    _warn_unseen(split, "labelled", classes, warnings)
    return split.texts, split.labels, warnings


def _finish(cfg: Any, raw: _Raw) -> TextDataset:
    warnings = list(raw.warnings or [])
    seed = int(cfg.split_seed)
    train = _normalise(raw.train, cfg, warnings)
    valid = _normalise(raw.valid, cfg, warnings) if raw.valid is not None else None
    test = _normalise(raw.test, cfg, warnings) if raw.test is not None else None
    if test is not None and Path(test.source).resolve() == Path(train.source).resolve():
        # Evaluating on the training rows would report a meaningless score.
        warnings.append(
            f"The train and test files are the same ({train.source}); carving a test split from it instead."
        )
        test = None
    train, valid, test = _split_three_ways(train, valid, test, seed, float(cfg.valid_frac))
    classes = _classes(raw.train.source, train, valid, test, warnings)

    # max_train_examples keeps the first rows of the already shuffled train split; max_docs caps
    # every split (train included) for quick experiments.
    for cap in (cfg.max_train_examples, cfg.max_docs):
        if cap is not None:
            train = _take(train, list(range(min(int(cap), len(train.texts)))))
    doc_cap = int(cfg.max_docs) if cfg.max_docs is not None else None
    valid, test = _subset(valid, doc_cap, seed), _subset(test, doc_cap, seed)
    lm_extra = [t for t in (raw.lm_extra or []) if t and t.strip()][:doc_cap]
    return TextDataset(name=str(cfg.name), train_texts=train.texts, valid_texts=valid.texts, test_texts=test.texts,
                       train_labels=train.labels, valid_labels=valid.labels, test_labels=test.labels,
                       lm_extra=lm_extra, classes=classes, warnings=warnings)


_READERS: dict[str, Callable[[Any, Path], _Raw]] = {
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
