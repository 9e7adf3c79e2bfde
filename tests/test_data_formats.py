"""The user's own text: unlabelled lm_files for LM fine-tuning, Parquet, Hugging Face datasets."""
from __future__ import annotations

import gzip
import json
import re
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import FAST, assert_clean_error, ulmfit
from ulmfit_cli.config import DatasetConfig
from ulmfit_cli.data.readers import load_dataset
from ulmfit_cli.errors import UserError

OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
WORDS = "good bad film plot actor great awful boring fun story".split()


def doc(i: int, n: int = 12) -> str:
    """Lowercase words only: the word tokenizer makes exactly n tokens of it, plus xxbos."""
    return " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(n))


def write_train_csv(path: Path, n: int = 60) -> Path:
    path.write_text("text,label\n" + "".join(f"{doc(i)},{'ab'[i % 2]}\n" for i in range(n)), encoding="utf-8")
    return path


def write_lm_sources(root: Path) -> list[str]:
    """Every lm_files kind but Parquet; returns the documents they hold, in lm_files order."""
    (root / "extra.txt").write_text("one doc here\n\n  second doc  \nthird doc\n", encoding="utf-8")
    (root / "unsup" / "deeper").mkdir(parents=True)
    (root / "unsup" / "b.txt").write_text("folder doc b\n", encoding="utf-8")
    (root / "unsup" / "a.txt").write_text("folder doc a", encoding="utf-8")
    (root / "unsup" / "deeper" / "c.txt").write_text("folder doc c", encoding="utf-8")
    (root / "unsup" / "notes.md").write_text("not a document", encoding="utf-8")
    (root / "more.jsonl").write_text(json.dumps({"text": "json doc", "other": 1}) + "\n", encoding="utf-8")
    with gzip.open(root / "more.tsv.gz", "wt", encoding="utf-8") as fh:
        fh.write("id\ttext\n1\ttsv doc, with a comma\n2\t\n")
    return ["one doc here", "second doc", "third doc", "folder doc a", "folder doc b", "folder doc c",
            "json doc", "tsv doc, with a comma"]


LM_FILES = ["extra.txt", "unsup", "more.jsonl", "more.tsv.gz"]


# --------------------------------------------------------------------------- lm_files


def test_lm_files_of_every_kind_are_read_in_order(tmp_path, monkeypatch):
    write_train_csv(tmp_path / "train.csv")
    expected = write_lm_sources(tmp_path)
    ds = load_dataset(DatasetConfig(name="csv", data_dir=str(tmp_path), train_file="train.csv", lm_files=LM_FILES))
    assert ds.lm_extra == expected
    assert len(ds.train_texts) == 48 and ds.warnings == []
    # Without data_dir, relative entries start at the current folder, as train_file does.
    monkeypatch.chdir(tmp_path)
    lm_files = ["unsup", str(tmp_path / "more.jsonl")]
    ds = load_dataset(DatasetConfig(name="jsonl", train_file="train.csv", lm_files=lm_files))
    assert ds.lm_extra == ["folder doc a", "folder doc b", "folder doc c", "json doc"]


def test_use_unsup_false_ignores_lm_files_and_max_docs_caps_them(tmp_path):
    write_train_csv(tmp_path / "train.csv")
    expected = write_lm_sources(tmp_path)
    cfg = dict(name="csv", data_dir=str(tmp_path), train_file="train.csv", lm_files=LM_FILES)
    assert load_dataset(DatasetConfig(**cfg, use_unsup=False)).lm_extra == []
    assert load_dataset(DatasetConfig(**cfg, max_docs=4)).lm_extra == expected[:4]
    # Readers that are not csv/jsonl take them too (the sample's own unlabelled reviews come first).
    sample = load_dataset(DatasetConfig(name="sample", data_dir=str(tmp_path), lm_files=["extra.txt"]))
    assert sample.lm_extra[-3:] == expected[:3] and len(sample.lm_extra) == 3500 + 3
    assert load_dataset(DatasetConfig(**cfg), lm_files=False).lm_extra == []


def test_finetune_lm_trains_on_the_lm_files_tokens(tmp_path):
    """The LM sees the labelled training text plus every lm_files document: one xxbos and one
    token per word (and comma) each, so the token count grows by exactly that much."""
    write_train_csv(tmp_path / "train.csv")
    extra = write_lm_sources(tmp_path)
    without = 48 * 13  # 60 rows less 6 valid and 6 test, 12 words + xxbos each
    added = sum(len(re.findall(r"\w+|,", t)) + 1 for t in extra)
    assert added == 32
    proc = ulmfit("finetune-lm", *FAST, "pretrained=null", "bidirectional=fwd", "dataset=csv",
                  "dataset.train_file=train.csv", f"dataset.lm_files=[{','.join(LM_FILES)}]", cwd=tmp_path)
    run = next((tmp_path / "outputs" / "finetune-lm").iterdir())
    assert json.loads((run / "summary.json").read_text())["results"]["fwd"]["train_tokens"] == without + added
    assert f"fwd LM: {without + added} train tokens" in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- Parquet


def test_parquet_train_valid_test_and_lm_files(tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    texts = [doc(i) for i in range(40)] + [None]
    pd.DataFrame({"review": texts, "stars": [i % 3 + 1 for i in range(41)]}).to_parquet(tmp_path / "train.parquet")
    pd.DataFrame({"review": ["valid one", "valid two"], "stars": [1, 3]}).to_parquet(tmp_path / "valid.parquet")
    pd.DataFrame({"review": ["test one"], "stars": [2], "tags": [["x"]]}).to_parquet(tmp_path / "test.parquet")
    pd.DataFrame({"review": ["pq doc", None, "pq doc 2"]}).to_parquet(tmp_path / "lm.parquet")
    ds = load_dataset(DatasetConfig(
        name="csv", data_dir=str(tmp_path), train_file="train.parquet", valid_file="valid.parquet",
        test_file="test.parquet", text_cols=["review"], label_col="stars", lm_files=["lm.parquet"]))
    assert (len(ds.train_texts), ds.valid_texts, ds.test_texts) == (40, ["valid one", "valid two"], ["test one"])
    assert ds.classes == ["1", "2", "3"] and ds.valid_labels == ["1", "3"] and ds.test_labels == ["2"]
    assert ds.lm_extra == ["pq doc", "pq doc 2"]
    assert any("dropped 1 row(s) with empty text" in w for w in ds.warnings)


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(UserError) as err:
        load_dataset(DatasetConfig(name="csv", train_file=str(tmp_path / "t.parquet")))
    assert "t.parquet" in str(err.value) and "pip install -e '.[formats]'" in str(err.value)


def test_train_clf_on_parquet_and_predict_a_parquet_input(tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    rows = [doc(i) + (" great fun" if i % 2 else " awful boring") for i in range(80)]
    pd.DataFrame({"text": rows, "label": ["pos" if i % 2 else "neg" for i in range(80)]}).to_parquet(
        tmp_path / "train.parquet")
    queries = ["great fun great fun", "awful boring", None, "film"]
    pd.DataFrame({"id": [1, 2, 3, 4], "review": queries}).to_parquet(tmp_path / "texts.parquet")
    ulmfit("train-clf", *FAST, "lm=null", "bidirectional=fwd", "unfreeze=none", "dataset=csv",
           "dataset.train_file=train.parquet", cwd=tmp_path)
    run = next((tmp_path / "outputs" / "train-clf").iterdir())
    ulmfit("predict", f"run={run}", "input=texts.parquet", "text_col=review", "output=preds.csv", cwd=tmp_path)
    preds = pd.read_csv(tmp_path / "preds.csv", keep_default_na=False)
    assert preds["text"].tolist() == ["great fun great fun", "awful boring", "", "film"]
    assert set(preds["label"]) <= {"neg", "pos"} and list(preds.columns[-2:]) == ["p_neg", "p_pos"]


def test_predict_reads_text_tables_like_the_dataset_readers(tmp_path):
    """predict's input goes through the dataset readers: CSV quoting, TSV, gzip, JSONL and a BOM."""
    from ulmfit_cli.commands.predict import read_texts

    (tmp_path / "in.csv").write_text('\ufeffid,review\n1,"a, quoted ""text"""\n2,NA\n', encoding="utf-8")
    assert read_texts(str(tmp_path / "in.csv"), ["review"]) == ['a, quoted "text"', "NA"]
    with gzip.open(tmp_path / "in.tsv.gz", "wt", encoding="utf-8") as f:
        f.write("review\tid\nfirst one\t1\nsecond\t2\n")
    assert read_texts(str(tmp_path / "in.tsv.gz"), ["review"]) == ["first one", "second"]
    (tmp_path / "in.jsonl").write_text('{"review": "x y"}\n\n{"review": null}\n', encoding="utf-8")
    assert read_texts(str(tmp_path / "in.jsonl"), ["review"]) == ["x y", ""]
    (tmp_path / "in.txt").write_text("one, two\nthree\n", encoding="utf-8")
    assert read_texts(str(tmp_path / "in.txt"), ["review"]) == ["one, two", "three"]
    with pytest.raises(UserError) as err:
        read_texts(str(tmp_path / "in.csv"), ["text"])
    assert "has no column 'text'" in str(err.value) and "text_col=review" in str(err.value)


def test_predict_reads_the_columns_the_run_was_trained_on(tmp_path):
    """Without text_col=, predict joins the run's dataset.text_cols as training did: a file shaped
    like the test file scores as the test split did."""
    import pandas as pd

    def table(n: int, seed: int) -> pd.DataFrame:
        pos = [(i + seed) % 2 == 1 for i in range(n)]
        return pd.DataFrame({"id": range(n), "title": [f"title {i}" for i in range(n)],
                             "body": [doc(i + seed) + (" great fun" if p else " awful boring") for i, p in enumerate(pos)],
                             "label": ["pos" if p else "neg" for p in pos]})

    table(80, 0).to_csv(tmp_path / "train.csv", index=False)
    table(12, 1).to_csv(tmp_path / "test.csv", index=False)
    ulmfit("train-clf", *FAST, "lm=null", "bidirectional=fwd", "unfreeze=none", "dataset=csv", "tfidf_baseline=false",
           "dataset.train_file=train.csv", "dataset.test_file=test.csv", "dataset.text_cols=[title,body]", cwd=tmp_path)
    run = next((tmp_path / "outputs" / "train-clf").iterdir())
    ulmfit("predict", f"run={run}", "input=test.csv", "output=preds.csv", cwd=tmp_path)
    preds = pd.read_csv(tmp_path / "preds.csv").set_index("text")
    split = pd.read_csv(run / "predictions_test.csv").set_index("text")
    assert len(preds) == len(split) == 12 and preds.index.str.startswith("xxfld 1 title").all()
    cols = ["p_neg", "p_pos"]
    assert preds.loc[split.index, cols].to_numpy() == pytest.approx(split[cols].to_numpy(), abs=1e-4)
    proc = ulmfit("predict", f"run={run}", "input=test.csv", "text_col=summary", cwd=tmp_path, check=False)
    assert_clean_error(proc, "has no column 'summary'", "text_col=body")


def test_predict_parquet_input_without_the_text_column(tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    from ulmfit_cli.commands.predict import read_texts

    pd.DataFrame({"id": [1, 2], "review": ["a", None]}).to_parquet(tmp_path / "texts.parquet")
    assert read_texts(str(tmp_path / "texts.parquet"), ["review"]) == ["a", ""]
    with pytest.raises(UserError) as err:
        read_texts(str(tmp_path / "texts.parquet"), ["text"])
    assert "has no column 'text'; its columns are ['id', 'review']" in str(err.value) and "text_col=review" in str(err.value)


# --------------------------------------------------------------------------- Hugging Face datasets


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    """A DatasetDict as save_to_disk writes it: ClassLabel labels, a test split whose labels are
    withheld (-1, as GLUE's are), and unlabelled reviews."""
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})

    def split(prefix: str, n: int, hidden: bool = False):
        return datasets.Dataset.from_dict(
            {"sentence": [f"{prefix} {doc(i, 6)}" for i in range(n)],
             "label": [-1 if hidden else i % 2 for i in range(n)]},
            features=features)

    folder = tmp_path_factory.mktemp("hf") / "reviews"
    datasets.DatasetDict(train=split("train", 40), validation=split("valid", 6), test=split("test", 8),
                         hidden=split("hidden", 5, hidden=True), unsupervised=split("unsup", 7, hidden=True),
                         ).save_to_disk(str(folder))
    return folder


def hf_cfg(folder: Path, **kw) -> DatasetConfig:
    return DatasetConfig(**{"name": "hf", "path": str(folder), "text_cols": ["sentence"], **kw})


def test_hf_save_to_disk_gives_class_names_and_default_splits(hf_dir):
    ds = load_dataset(hf_cfg(hf_dir))
    assert ds.classes == ["negative", "positive"]
    assert ds.valid_texts == [f"valid {doc(i, 6)}" for i in range(6)]
    assert ds.test_texts == [f"test {doc(i, 6)}" for i in range(8)]
    assert ds.test_labels == ["negative", "positive"] * 4
    assert len(ds.train_texts) == 40 and ds.lm_extra == []


def test_hf_split_map_carves_missing_splits_and_reads_lm(hf_dir):
    ds = load_dataset(hf_cfg(hf_dir, split_map={"train": "train", "test": "test", "lm": "unsupervised"}))
    assert (len(ds.train_texts), len(ds.valid_texts)) == (36, 4)  # valid carved: 10% of 40
    assert set(ds.train_texts + ds.valid_texts) == {f"train {doc(i, 6)}" for i in range(40)}
    assert ds.lm_extra == [f"unsup {doc(i, 6)}" for i in range(7)]
    off = hf_cfg(hf_dir, split_map={"train": "train", "lm": "unsupervised"}, use_unsup=False)
    assert load_dataset(off).lm_extra == []


def test_hf_single_split_with_multi_label_class_names(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "tags": datasets.Sequence(datasets.ClassLabel(names=["art", "bio", "cs"]))})
    datasets.Dataset.from_dict({"text": [doc(i) for i in range(20)], "tags": [[i % 3, 2] for i in range(20)]},
                               features=features).save_to_disk(str(tmp_path / "one"))
    ds = load_dataset(DatasetConfig(name="hf", path=str(tmp_path / "one"), label_col="tags", multi_label=True))
    assert ds.classes == ["art", "bio", "cs"] and (len(ds.valid_texts), len(ds.test_texts)) == (2, 2)
    labels = {tuple(t) for t in ds.train_labels + ds.valid_labels + ds.test_labels}
    assert labels == {("art", "cs"), ("bio", "cs"), ("cs",)}


@pytest.mark.parametrize("kw, needles", [
    (dict(split_map={"train": "train", "valid": "dev"}),
     ["dataset.split_map.valid=dev", "no split 'dev'", "'validation'", "leave valid out"]),
    (dict(split_map={"train": "train", "vaild": "validation"}), ["unknown key(s) ['vaild']"]),
    (dict(split_map={"train": "train", "test": "hidden"}), ["(split 'hidden')", "is -1", "dataset.split_map"]),
    (dict(text_cols=["text"]), ["(split 'train') has no column 'text'", "'sentence'", "dataset.text_cols"]),
])
def test_hf_bad_split_map_and_columns(hf_dir, kw, needles):
    with pytest.raises(UserError) as err:
        load_dataset(hf_cfg(hf_dir, **kw))
    for n in needles:
        assert n in str(err.value)


def test_hf_without_datasets_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(UserError) as err:
        load_dataset(DatasetConfig(name="hf", path=str(tmp_path)))
    assert "pip install -e '.[hf]'" in str(err.value)


def test_hf_finetune_lm_offline_from_a_saved_dataset(hf_dir, tmp_path):
    proc = ulmfit("finetune-lm", *FAST, "pretrained=null", "bidirectional=fwd", "dataset=hf", f"dataset.path={hf_dir}",
                  "dataset.text_cols=[sentence]",
                  "dataset.split_map={train: train, valid: validation, lm: unsupervised}",
                  cwd=tmp_path, env=OFFLINE)
    # 36 train (4 carved for test) + 7 unsupervised documents of 7 words + xxbos; 6 valid ones
    assert "fwd LM: 344 train tokens, 48 valid tokens" in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- bad input, as the user sees it


def _xlsx(path: Path) -> str:
    with zipfile.ZipFile(path, "w") as z:  # an .xlsx is a zip archive
        z.writestr("xl/workbook.xml", "<workbook/>")
    return path.name


@pytest.mark.parametrize("case", ["missing", *(pytest.param(c, marks=pytest.mark.integration) for c in ("no_column", "empty", "xlsx", "xlsx_train", "empty_folder"))])
def test_bad_lm_files_are_clean_errors(tmp_path, case):
    write_train_csv(tmp_path / "train.csv")
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    (tmp_path / "body.csv").write_text("body\nsome text\n", encoding="utf-8")
    (tmp_path / "nothing").mkdir()
    train, lm, needles = "train.csv", None, []
    if case == "missing":
        lm, needles = "gone.txt", ["gone.txt (in dataset.lm_files) does not exist", "dataset.lm_files="]
    elif case == "no_column":
        lm, needles = "body.csv", ["body.csv (in dataset.lm_files) has no column 'text'", "'body'", "dataset.text_cols"]
    elif case == "empty":
        lm, needles = "empty.txt", ["empty.txt (in dataset.lm_files) holds no text"]
    elif case == "xlsx":
        lm = _xlsx(tmp_path / "sheet.xlsx")
        needles = ["sheet.xlsx (in dataset.lm_files) is not in a format", ".parquet"]
    elif case == "xlsx_train":
        train, needles = _xlsx(tmp_path / "train.xlsx"), ["train.xlsx (dataset.train_file) is not in a format", ".csv"]
    else:
        lm, needles = "nothing", ["nothing (in dataset.lm_files) holds no text"]
    args = [f"dataset.lm_files=[{lm}]"] if lm else []
    proc = ulmfit("finetune-lm", *FAST, "pretrained=null", "bidirectional=fwd", "dataset=csv",
                  f"dataset.train_file={train}", *args, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert_clean_error(proc, *needles)


@pytest.mark.parametrize("name, body, needles", [
    ("train.csv", "text;label\n{};a\n", ["one column named 'text;label'", "semicolon-separated",
                                         "pd.read_csv(path, sep=';').to_csv(new_path, index=False)"]),
    ("train.csv", "text\tlabel\n{}\ta\n", ["tab-separated", "a CSV file is read as comma-separated",
                                           "Rename it to .tsv"]),
    ("train.tsv", "text,label\n{},a\n", ["comma-separated", "Rename it to .csv"]),
    ("train.tsv", "text|label\n{}|a\n", ["pipe-separated", "to_csv(new_path, index=False, sep='\\t')"]),
])
def test_a_table_with_another_separator_names_it(tmp_path, name, body, needles):
    """A spreadsheet saved with `;` must not be a request for a column named 'text;label'."""
    (tmp_path / name).write_text(body.format(doc(0)), encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_dataset(DatasetConfig(name="csv", data_dir=str(tmp_path), train_file=name))
    for n in needles:
        assert n in str(err.value), str(err.value)


def test_one_column_holding_a_separator_in_its_text_is_read(tmp_path):
    write_train_csv(tmp_path / "train.csv")
    (tmp_path / "one.csv").write_text("text\nfell; then rose | again\n", encoding="utf-8")
    ds = load_dataset(DatasetConfig(name="csv", data_dir=str(tmp_path), train_file="train.csv", lm_files=["one.csv"]))
    assert ds.lm_extra == ["fell; then rose | again"]


@pytest.mark.integration
def test_hf_without_a_path_is_a_clean_error(tmp_path):
    proc = ulmfit("finetune-lm", *FAST, "pretrained=null", "bidirectional=fwd", "dataset=hf", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert_clean_error(proc, "dataset=hf needs dataset.path", "Add dataset.path=")


@pytest.mark.parametrize("args, needles", [
    (["dataset.path=HF", "dataset.split_map={train: train, valid: dev}"], ["no split 'dev'", "'validation'"]),
    pytest.param(["dataset.path=./not/here"], ["dataset.path=./not/here: no such folder"], marks=pytest.mark.integration),
    pytest.param(["dataset.path=surely-not-a-cached-dataset"], ["could not load it", "HF_DATASETS_OFFLINE=1"], marks=pytest.mark.integration),
])
def test_bad_hf_input_is_a_clean_error(hf_dir, tmp_path, args, needles):
    args = [a.replace("=HF", f"={hf_dir}") for a in args]
    proc = ulmfit("finetune-lm", *FAST, "pretrained=null", "bidirectional=fwd", "dataset=hf",
                  "dataset.text_cols=[sentence]", *args, cwd=tmp_path, check=False, env=OFFLINE)
    assert proc.returncode == 2
    assert_clean_error(proc, *needles)
