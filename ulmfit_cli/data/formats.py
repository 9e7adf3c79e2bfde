"""File formats: bytes and encodings, format sniffing, and the table readers (csv, tsv, jsonl, parquet).

What a file's name says it holds picks the parser; a table's `dataset.text_cols` are joined into one
text per row (fastai's `xxfld` convention) and `dataset.label_col` gives the labels. Bad input raises
`UserError` naming the file and the fix; undecodable bytes become a warning.
"""
from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ulmfit_cli.data.file_texts import undecodable_lines
from ulmfit_cli.data.splits import Split, normalise, warn_unseen
from ulmfit_cli.errors import UserError


# fastai's field marker: lets the model tell title from body when several columns form one text.
FIELD_MARKER = "xxfld"


def read_bytes(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:
        raise UserError(f"Cannot read {path}: {exc}.", "Check the file is complete (re-download it).") from exc


def decode(raw: bytes, path: Path, warnings: list[str]) -> str:
    """UTF-8, but never fail on a stray byte: replace it and report how many lines were hit."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    warn_undecodable(path, undecodable_lines(raw), warnings)
    return raw.decode("utf-8-sig", errors="replace")


def warn_undecodable(path: Path, bad: int, warnings: list[str]) -> None:
    warnings.append(
        f"{path}: {bad} line(s) held bytes that are not valid UTF-8; they were replaced by U+FFFD. "
        "Re-encode the file as UTF-8 to keep those characters."
    )


def join_fields(fields: list[str]) -> str:
    """fastai's convention: several fields become `xxfld 1 <a> xxfld 2 <b>`; one field stays plain."""
    fields = ["" if f is None else str(f) for f in fields]
    if len(fields) == 1:
        return fields[0]
    if not any(f.strip() for f in fields):
        return ""
    return " ".join(f"{FIELD_MARKER} {i} {f}" for i, f in enumerate(fields, 1))


def parse_frame(path: Path, text: str, sep: str, header: int | None) -> pd.DataFrame:
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


def text_columns(cfg: Any) -> list[str]:
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


def file_format(path: Path, cfg: Any, key: str, lm: bool = False) -> str:
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


def table_columns(path: Path, fmt: str, warnings: list[str]) -> tuple[list, Callable[[str], list]]:
    """The columns of a csv/tsv/jsonl/parquet file and a getter for one column's values."""
    if fmt == "parquet":
        return open_parquet(path)
    content = decode(read_bytes(path), path, warnings)
    if fmt == "jsonl":
        rows = jsonl_rows(path, content)
        return list(rows[0].keys()), lambda col: [row.get(col) for row in rows]
    frame = parse_frame(path, content, sep="\t" if fmt == "tsv" else ",", header=0)
    if frame.empty:
        raise UserError(f"{path} has a header but no rows.", "Give a file with at least one row.")
    # GLUE-style headers may carry stray spaces (`sentence \t label`).
    frame.columns = [str(c).strip() for c in frame.columns]
    return list(frame.columns), lambda col: frame[col].tolist()


def jsonl_rows(path: Path, content: str) -> list[dict]:
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


def read_text_columns(path: Path, columns: list[str], key: str) -> list[str] | None:
    """The texts of a .csv/.tsv/.jsonl/.parquet file (the text ones may be .gz), `columns` joined as
    training joins dataset.text_cols, nulls as ""; every row kept, so outputs line up with the file.
    None for a file of another format. `key` is the setting that names the column, for the error."""
    fmt = _table_format(path)
    if fmt is None:
        return None
    present, get_col = table_columns(path, fmt, [])
    for column in columns:
        if column not in present:
            raise _missing_column(path, column, present, key,
                                  _likeliest_text_column(present, get_col) if present else "...")
    return [join_fields(list(row)) for row in zip(*(get_col(c) for c in columns))]


DATASET_KEYS = ("dataset.text_cols", "dataset.label_col")


def columns_split(source: str, present: list, get_col: Callable[[str], list], cfg: Any,
                   labelled: bool = True, keys: tuple[str, str] = DATASET_KEYS) -> Split:
    """Join `dataset.text_cols` into one text per row; labels from `dataset.label_col` if `labelled`.
    `keys` name the settings that choose the columns, for the errors."""
    text_cols, label_col = text_columns(cfg), (cfg.label_col if labelled else None)
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
    texts = [join_fields(list(row)) for row in zip(*columns)]
    labels = get_col(label_col) if label_col is not None else None
    return Split(texts, labels, source)


def _likeliest_text_column(candidates: list, get_col: Callable[[str], list]) -> str:
    """The column whose values are longest on average: text, rather than a label or an id."""
    def mean_len(c) -> float:
        values = get_col(c)
        return sum(len(str(v)) for v in values) / max(len(values), 1)
    return str(max(candidates, key=mean_len))


def table_file(path: Path, cfg: Any, warnings: list[str], key: str, keys: tuple[str, str] = DATASET_KEYS) -> Split:
    present, get_col = table_columns(path, file_format(path, cfg, key), warnings)
    return columns_split(str(path), present, get_col, cfg, keys=keys)


def read_labelled_file(path: Path, cfg: Any, classes: list[str], key: str,
                       keys: tuple[str, str]) -> tuple[list[str], list, list[str]]:
    """(texts, labels, warnings) of one labelled table read as the dataset `cfg` reads its files
    (text_cols joined, label_col, multi-labels split on label_sep); labels outside `classes` warn.
    `key` names the setting that gave the file, `keys` those that name its columns."""
    warnings: list[str] = []
    split = normalise(table_file(path, cfg, warnings, key, keys), cfg, warnings)
    warn_unseen(split, "labelled", classes, warnings)
    return split.texts, split.labels, warnings
