"""Tests for ulmfit_cli.data.readers: real files from shared/data plus small tmp_path corpora."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from ulmfit_cli.config import DatasetConfig
from ulmfit_cli.data.download_registry import default_data_root
from ulmfit_cli.data.readers import load_dataset
from ulmfit_cli.data.types import TextDataset
from ulmfit_cli.errors import UserError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared(sub: str) -> Path:
    path = SHARED / sub
    if not path.is_dir():
        pytest.skip(f"{path} not available")
    return path


def all_texts(ds: TextDataset) -> list[str]:
    return ds.train_texts + ds.valid_texts + ds.test_texts


def all_labels(ds: TextDataset) -> list:
    return ds.train_labels + ds.valid_labels + ds.test_labels


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def labelled_rows(n: int = 40, classes=("a", "b")) -> list[str]:
    return ["text,label"] + [f"sample text number {i},{classes[i % len(classes)]}" for i in range(n)]


# --------------------------------------------------------------------------- real data


def test_trec_real_counts_and_latin1_line():
    ds = load_dataset(DatasetConfig(name="trec6", data_dir=str(shared("trec6"))))
    assert len(ds.train_texts) + len(ds.valid_texts) == 5452
    assert len(ds.valid_texts) == round(5452 * 0.1)
    assert len(ds.test_texts) == 500
    assert Counter(ds.test_labels) == {"ABBR": 9, "DESC": 138, "ENTY": 94, "HUM": 65, "LOC": 81, "NUM": 113}
    assert Counter(ds.train_labels + ds.valid_labels) == {
        "ABBR": 86, "DESC": 1162, "ENTY": 1250, "HUM": 1223, "LOC": 835, "NUM": 896,
    }
    assert ds.classes == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    # Line 66's single 0xF0 byte decodes as Latin-1 'ð'.
    assert any("sister\u00f0city" in t for t in ds.train_texts + ds.valid_texts)
    # text = everything after the first space: no label prefix left.
    assert not any(":" in t.split(" ")[0] and t.split(" ")[0].isupper() for t in all_texts(ds))
    assert "How far is it from Denver to Aspen ?" in ds.test_texts
    assert ds.warnings == []


def test_wikitext2_valid_test_fallback_keeps_every_word():
    ds = load_dataset(DatasetConfig(name="wikitext2", data_dir=str(shared("wikitext2"))))
    assert ds.train_labels is None and ds.classes == []
    assert len(ds.train_texts) > 50 and ds.valid_texts and ds.test_texts
    assert len(ds.valid_texts) == len(ds.test_texts)
    assert sum(len(t.split()) for t in all_texts(ds)) == 213_886 + 241_211
    assert all(t.startswith("= ") and t.split("\n")[0].endswith(" =") for t in all_texts(ds))
    assert not any(line == "" for t in all_texts(ds) for line in t.split("\n"))
    assert any("wiki.train.tokens" in w and "missing" in w for w in ds.warnings)


@pytest.fixture(scope="module")
def imdb_real():
    return load_dataset(DatasetConfig(name="imdb", data_dir=str(shared("imdb"))))


def test_imdb_real_gz(imdb_real):
    ds = imdb_real
    assert len(ds.test_texts) == 25_000
    assert Counter(ds.test_labels) == {"neg": 12_500, "pos": 12_500}
    assert len(ds.train_texts) + len(ds.valid_texts) == 25_000
    assert Counter(ds.train_labels + ds.valid_labels) == {"neg": 12_500, "pos": 12_500}
    assert len(ds.lm_extra) == 50_000
    assert ds.classes == ["neg", "pos"]
    assert "<br />" in "".join(ds.test_texts[:200])


def test_ag_news_real_test_file_as_train():
    ds = load_dataset(DatasetConfig(name="ag_news", data_dir=str(shared("agnews")), train_file="test.csv"))
    assert ds.classes == ["Business", "Sci/Tech", "Sports", "World"]
    assert Counter(all_labels(ds)) == {"World": 1900, "Sports": 1900, "Business": 1900, "Sci/Tech": 1900}
    texts = all_texts(ds)
    assert len(texts) == 7600
    assert not any("\\n" in t for t in texts)
    assert not any("\\" in t for t in texts)
    assert all(t.startswith("xxfld 1 ") and " xxfld 2 " in t for t in texts)
    # A line break before a word starting with "n" must not eat the "n".
    assert any("social\nnetwork" in t for t in texts)
    assert any("second\nteam" in t for t in texts)
    # The same file as train and test must not leak: test is carved instead, with a warning.
    assert any("same" in w for w in ds.warnings)
    assert not set(ds.test_texts) & set(ds.train_texts)


def test_ag_news_missing_train_file_is_named():
    with pytest.raises(UserError) as err:
        load_dataset(DatasetConfig(name="ag_news", data_dir=str(shared("agnews"))))
    msg = str(err.value)
    assert "train.csv" in msg and "ulmfit download ag_news" in msg


def test_sst2_tsv_real():
    d = shared("sst2")
    cfg = DatasetConfig(name="csv", data_dir=str(d), train_file="train.tsv", valid_file="dev.tsv",
                        test_file="test_labeled.tsv", text_cols=["sentence"])
    ds = load_dataset(cfg)
    assert (len(ds.train_texts), len(ds.valid_texts), len(ds.test_texts)) == (67_349, 872, 1_821)
    assert Counter(ds.test_labels) == {"0": 912, "1": 909}
    assert ds.classes == ["0", "1"]


# --------------------------------------------------------------------------- synthetic corpora


def test_csv_carves_valid_and_test_and_sorts_classes(tmp_path):
    write_csv(tmp_path / "train.csv", labelled_rows(100, classes=("zeta", "alpha", "mid")))
    ds = load_dataset(DatasetConfig(name="csv", data_dir=str(tmp_path), train_file="train.csv"))
    assert (len(ds.train_texts), len(ds.valid_texts), len(ds.test_texts)) == (80, 10, 10)
    assert ds.classes == ["alpha", "mid", "zeta"]
    assert len(set(all_texts(ds))) == 100
    assert ds.lm_extra == [] and ds.warnings == []


def test_csv_relative_to_cwd_and_dictconfig(tmp_path, monkeypatch):
    write_csv(tmp_path / "t.csv", labelled_rows(30))
    monkeypatch.chdir(tmp_path)
    cfg = OmegaConf.structured(DatasetConfig(name="csv", train_file="t.csv", valid_frac=0.2))
    ds = load_dataset(cfg)
    assert (len(ds.train_texts), len(ds.valid_texts), len(ds.test_texts)) == (18, 6, 6)


def test_csv_several_text_cols_get_field_markers(tmp_path):
    write_csv(tmp_path / "tr.csv", ["title,body,y"] + [f"T{i},B {i},{'ab'[i % 2]}" for i in range(20)])
    ds = load_dataset(DatasetConfig(name="csv", train_file=str(tmp_path / "tr.csv"),
                                    text_cols=["title", "body"], label_col="y"))
    assert "xxfld 1 T3 xxfld 2 B 3" in all_texts(ds)


def test_tsv_gz_and_unlabelled_lm_corpus(tmp_path):
    body = "text\n" + "".join(f"line {i} with, a comma\n" for i in range(50))
    with gzip.open(tmp_path / "lm.tsv.gz", "wt", encoding="utf-8") as fh:
        fh.write(body)
    ds = load_dataset(DatasetConfig(name="csv", data_dir=str(tmp_path), train_file="lm.tsv.gz", label_col=None))
    assert ds.train_labels is None and ds.classes == []
    assert len(all_texts(ds)) == 50 and "line 7 with, a comma" in all_texts(ds)


def test_csv_gz(tmp_path):
    with gzip.open(tmp_path / "t.csv.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(labelled_rows(20)) + "\n")
    ds = load_dataset(DatasetConfig(name="csv", data_dir=str(tmp_path), train_file="t.csv.gz"))
    assert len(all_texts(ds)) == 20


def test_jsonl_with_separate_files(tmp_path):
    for split, n in (("train", 30), ("valid", 5), ("test", 7)):
        rows = [json.dumps({"text": f"{split} doc {i}", "label": i % 2}) for i in range(n)]
        (tmp_path / f"{split}.jsonl").write_text("\n".join(rows) + "\n\n", encoding="utf-8")
    ds = load_dataset(DatasetConfig(name="jsonl", data_dir=str(tmp_path), train_file="train.jsonl",
                                    valid_file="valid.jsonl", test_file="test.jsonl"))
    assert (len(ds.train_texts), len(ds.valid_texts), len(ds.test_texts)) == (30, 5, 7)
    assert ds.classes == ["0", "1"] and set(ds.test_labels) == {"0", "1"}


def test_multi_label_csv_and_jsonl(tmp_path):
    write_csv(tmp_path / "m.csv", ["text,tags"] + [f"doc {i},{['b;a', 'c', 'a; c ;', ''][i % 4]}" for i in range(40)])
    ds = load_dataset(DatasetConfig(name="csv", data_dir=str(tmp_path), train_file="m.csv",
                                    label_col="tags", multi_label=True))
    assert ds.classes == ["a", "b", "c"]
    assert set(map(tuple, all_labels(ds))) == {("a", "b"), ("c",), ("a", "c"), ()}
    rows = [json.dumps({"text": f"d{i}", "tags": ["y", "x"] if i % 2 else ["z"]}) for i in range(20)]
    (tmp_path / "m.jsonl").write_text("\n".join(rows), encoding="utf-8")
    ds = load_dataset(DatasetConfig(name="jsonl", data_dir=str(tmp_path), train_file="m.jsonl",
                                    label_col="tags", multi_label=True, label_sep="|"))
    assert ds.classes == ["x", "y", "z"] and ["x", "y"] in all_labels(ds)


def test_split_is_deterministic_per_seed(tmp_path):
    write_csv(tmp_path / "t.csv", labelled_rows(200))

    def load(seed):
        return load_dataset(DatasetConfig(name="csv", data_dir=str(tmp_path), train_file="t.csv", split_seed=seed))

    a, b, c = load(1), load(1), load(2)
    assert a.valid_texts == b.valid_texts and a.test_texts == b.test_texts and a.train_texts == b.train_texts
    assert set(a.valid_texts) != set(c.valid_texts)


def test_max_train_examples_and_max_docs(tmp_path):
    write_csv(tmp_path / "t.csv", labelled_rows(200))
    full = load_dataset(DatasetConfig(name="csv", data_dir=str(tmp_path), train_file="t.csv"))
    ds = load_dataset(DatasetConfig(name="csv", data_dir=str(tmp_path), train_file="t.csv", max_train_examples=7))
    assert ds.train_texts == full.train_texts[:7] and ds.valid_texts == full.valid_texts
    ds = load_dataset(DatasetConfig(name="csv", data_dir=str(tmp_path), train_file="t.csv", max_docs=5))
    assert len(ds.train_texts) == len(ds.valid_texts) == len(ds.test_texts) == 5
    assert ds.classes == ["a", "b"]


def test_wikitext_full_layout_gz_and_headings(tmp_path):
    article = " = Title {n} = \n \n Para one of {n} .\n \n = = Section = = \n \n Para two .\n"
    (tmp_path / "wiki.train.tokens").write_text(" \n" + article.format(n=1) + article.format(n=2), encoding="utf-8")
    with gzip.open(tmp_path / "wiki.valid.tokens.gz", "wt", encoding="utf-8") as fh:
        fh.write(article.format(n=3))
    (tmp_path / "wiki.test.tokens").write_bytes(article.format(n=4).encode() + b" bad \xff byte\n")
    ds = load_dataset(DatasetConfig(name="wikitext103", data_dir=str(tmp_path)))
    assert sorted(ds.train_texts) == [
        "= Title 1 =\nPara one of 1 .\n= = Section = =\nPara two .",
        "= Title 2 =\nPara one of 2 .\n= = Section = =\nPara two .",
    ]
    assert ds.valid_texts == ["= Title 3 =\nPara one of 3 .\n= = Section = =\nPara two ."]
    assert "\ufffd" in ds.test_texts[0]
    assert any("1 line(s)" in w and "wiki.test.tokens" in w for w in ds.warnings)


def test_wikitext_missing_directory_and_files(tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset(DatasetConfig(name="wikitext2"), data_root=str(tmp_path))
    assert str(tmp_path / "wikitext2") in str(err.value) and "ulmfit download wikitext2" in str(err.value)
    (tmp_path / "wikitext103").mkdir()
    with pytest.raises(UserError) as err:
        load_dataset(DatasetConfig(name="wikitext103"), data_root=str(tmp_path))
    assert "wiki.train.tokens" in str(err.value) and "ulmfit download wikitext103" in str(err.value)


def test_default_data_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ULMFIT_DATA", str(tmp_path))
    assert Path(default_data_root()) == tmp_path
    monkeypatch.delenv("ULMFIT_DATA")
    assert Path(default_data_root()) == Path.home() / ".cache" / "ulmfit"
    monkeypatch.setenv("ULMFIT_DATA", str(tmp_path))
    (tmp_path / "trec6").mkdir()
    (tmp_path / "trec6" / "train_5500.label").write_text(
        "".join(f"{'HUM' if i % 2 else 'LOC'}:x question {i} ?\n" for i in range(30)), encoding="ascii")
    ds = load_dataset(DatasetConfig(name="trec6"))
    assert ds.classes == ["HUM", "LOC"] and len(ds.test_texts) == 3


def _imdb_tree(root: Path) -> None:
    for split in ("train", "test"):
        for label in ("neg", "pos"):
            (root / split / label).mkdir(parents=True)
            for i in range(10):
                (root / split / label / f"{i}_{3 if label == 'neg' else 8}.txt").write_text(f"{split} {label} review {i}")
    (root / "train" / "unsup").mkdir()
    for i in range(4):
        (root / "train" / "unsup" / f"{i}_0.txt").write_text(f"unsup review {i}")


def test_imdb_acl_folder_layouts(tmp_path):
    _imdb_tree(tmp_path / "aclImdb")
    for data_dir in (tmp_path, tmp_path / "aclImdb"):
        ds = load_dataset(DatasetConfig(name="imdb", data_dir=str(data_dir)))
        assert Counter(ds.test_labels) == {"neg": 10, "pos": 10}
        assert len(ds.train_texts) + len(ds.valid_texts) == 20
        assert sorted(ds.lm_extra) == [f"unsup review {i}" for i in range(4)]
    ds = load_dataset(DatasetConfig(name="imdb", data_dir=str(tmp_path), use_unsup=False))
    assert ds.lm_extra == []


def test_imdb_small_gz_without_unsup(tmp_path):
    for split in ("train", "test"):
        with gzip.open(tmp_path / f"{split}.csv.gz", "wt", encoding="utf-8") as fh:
            fh.write("id,label,rating,text\n")
            for i in range(10):
                fh.write(f'{i},{"pos" if i % 2 else "neg"},{i},"NA, said ""x"" {i}"\n')
    ds = load_dataset(DatasetConfig(name="imdb", data_dir=str(tmp_path), use_unsup=False))
    assert 'NA, said "x" 3' in ds.test_texts and ds.lm_extra == []
    with pytest.raises(UserError) as err:
        load_dataset(DatasetConfig(name="imdb", data_dir=str(tmp_path / "nowhere")))
    assert "nowhere" in str(err.value) and "ulmfit download imdb" in str(err.value)


def test_yelp_unescapes_and_numeric_labels(tmp_path):
    # Inner quotes are doubled by the CSV layer and backslash-escaped by the dataset's own convention.
    rows = ['"1","Bad.\\nVery \\""bad\\""."', '"2","Good!"'] * 10
    write_csv(tmp_path / "train.csv", rows)
    write_csv(tmp_path / "test.csv", rows[:4])
    ds = load_dataset(DatasetConfig(name="yelp_bi", data_dir=str(tmp_path)))
    assert ds.classes == ["1", "2"] and len(ds.test_texts) == 4
    assert 'Bad.\nVery "bad".' in all_texts(ds)


def test_sample_dispatch_is_lazy(monkeypatch):
    """dataset=sample goes to the generator, which the readers import only then."""
    fake = types.ModuleType("ulmfit_cli.data.sample")
    fake.generate_sample = lambda cfg: TextDataset(name="sample", train_texts=["x"], valid_texts=[], test_texts=[])
    monkeypatch.setitem(sys.modules, "ulmfit_cli.data.sample", fake)
    assert load_dataset(DatasetConfig(name="sample")).train_texts == ["x"]
    fresh = subprocess.run([sys.executable, "-c", "import sys, ulmfit_cli.data.readers; print(sorted(sys.modules))"],
                           capture_output=True, text=True, check=True)
    assert "'ulmfit_cli.data.readers'" in fresh.stdout and "'ulmfit_cli.data.sample'" not in fresh.stdout


# --------------------------------------------------------------------------- bad input


def _csv_cfg(tmp_path, **kw):
    return DatasetConfig(name="csv", data_dir=str(tmp_path), **{"train_file": "t.csv", **kw})


def test_unknown_name():
    with pytest.raises(UserError, match="dataset.name"):
        load_dataset(DatasetConfig(name="nope"))


def test_missing_train_file_and_key(tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset(_csv_cfg(tmp_path, train_file="absent.csv"))
    assert str(tmp_path / "absent.csv") in str(err.value) and "dataset.train_file" in str(err.value)
    with pytest.raises(UserError, match="dataset.train_file"):
        load_dataset(DatasetConfig(name="csv"))
    with pytest.raises(UserError, match="dataset.data_dir"):
        load_dataset(DatasetConfig(name="csv", data_dir=str(tmp_path / "no"), train_file="t.csv"))


def test_missing_text_column_lists_columns(tmp_path):
    write_csv(tmp_path / "t.csv", ["review,label", "hello,a", "bye,b"])
    with pytest.raises(UserError) as err:
        load_dataset(_csv_cfg(tmp_path))
    msg = str(err.value)
    assert "'text'" in msg and "review" in msg and "dataset.text_cols" in msg and "t.csv" in msg


def test_missing_label_column_lists_columns(tmp_path):
    write_csv(tmp_path / "t.csv", ["text,sentiment", "hello,a", "bye,b"])
    with pytest.raises(UserError) as err:
        load_dataset(_csv_cfg(tmp_path))
    msg = str(err.value)
    assert "'label'" in msg and "sentiment" in msg and "dataset.label_col=sentiment" in msg
    (tmp_path / "t.jsonl").write_text('{"text": "a", "y": 1}\n', encoding="utf-8")
    with pytest.raises(UserError, match="dataset.label_col"):
        load_dataset(DatasetConfig(name="jsonl", data_dir=str(tmp_path), train_file="t.jsonl"))


@pytest.mark.parametrize("content", ["", "text,label\n", "text,label\n ,a\n,b\n"])
def test_empty_dataset_names_file(tmp_path, content):
    (tmp_path / "t.csv").write_text(content, encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_dataset(_csv_cfg(tmp_path))
    assert str(tmp_path / "t.csv") in str(err.value)


def test_empty_jsonl_and_bad_json_line(tmp_path):
    (tmp_path / "t.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(UserError, match="t.jsonl"):
        load_dataset(DatasetConfig(name="jsonl", data_dir=str(tmp_path), train_file="t.jsonl"))
    (tmp_path / "t.jsonl").write_text('{"text": "a", "label": "x"}\n{oops\n', encoding="utf-8")
    with pytest.raises(UserError, match="line 2"):
        load_dataset(DatasetConfig(name="jsonl", data_dir=str(tmp_path), train_file="t.jsonl"))


def test_single_class_in_train(tmp_path):
    write_csv(tmp_path / "t.csv", labelled_rows(20, classes=("only",)))
    with pytest.raises(UserError) as err:
        load_dataset(_csv_cfg(tmp_path))
    assert "t.csv" in str(err.value) and "only" in str(err.value) and "dataset.label_col" in str(err.value)


def test_non_utf8_bytes_are_replaced_and_counted(tmp_path):
    lines = [b"text,label"] + [f"row {i},{'ab'[i % 2]}".encode() for i in range(20)]
    lines[3] = b"caf\xe9 latin,a"
    lines[5] = b"na\xefve \xff,b"
    (tmp_path / "t.csv").write_bytes(b"\n".join(lines) + b"\n")
    ds = load_dataset(_csv_cfg(tmp_path))
    assert any("caf\ufffd latin" == t for t in all_texts(ds))
    assert any("2 line(s)" in w and "t.csv" in w for w in ds.warnings)


def test_unseen_labels_warn_with_at_most_five(tmp_path):
    write_csv(tmp_path / "t.csv", labelled_rows(20))
    write_csv(tmp_path / "v.csv", ["text,label"] + [f"v{i},new{i}" for i in range(8)] + ["ok,a"])
    ds = load_dataset(_csv_cfg(tmp_path, valid_file="v.csv"))
    assert len(ds.valid_texts) == 9
    (w,) = [w for w in ds.warnings if "not seen in train" in w]
    assert "8 valid row(s)" in w and "v.csv" in w and "new0" in w and "new7" not in w and "3 more" in w
    assert "count as errors in accuracy and are left out of the loss" in w


def test_rows_with_unseen_labels_are_wrong_and_out_of_the_loss():
    from ulmfit_cli.stages.clf import label_ids
    from ulmfit_cli.training.scoring import scores

    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.9, 0.1], [0.4, 0.6]])
    gold = label_ids(["a", "b", "new", "new"], ["a", "b"], False)
    s = scores(probs, gold)
    assert list(gold) == [0, 1, -1, -1]
    assert s["accuracy"] == 0.5 and s["error"] == 50.0
    assert s["loss"] == pytest.approx(-(np.log(0.8) + np.log(0.7)) / 2, abs=1e-6)  # not log(0.1), log(0.6)
    assert np.isnan(scores(probs[2:], gold[2:])["loss"])


def test_a_float_label_column_names_the_same_classes_as_an_integer_one(tmp_path):
    """pandas writes a label column with one empty cell as 1.0 / 0.0; the test file says 1 / 0."""
    (tmp_path / "train.csv").write_text("text,label\n" + "".join(f"doc {i},{i % 2}.0\n" for i in range(20)) + "doc x,\n")
    (tmp_path / "test.csv").write_text("text,label\nfirst,1\nsecond,0\nthird,10.5\n")
    (tmp_path / "lm.jsonl").write_text("")
    ds = load_dataset(DatasetConfig(name="csv", data_dir=str(tmp_path), train_file="train.csv", test_file="test.csv"))
    assert ds.classes == ["0", "1"] and ds.test_labels == ["1", "0", "10.5"]
    assert any("dropped 1 row(s) with an empty label" in w for w in ds.warnings)
    rows = [{"text": f"doc {i}", "tags": [1.0, float(i % 3)]} for i in range(12)]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = load_dataset(DatasetConfig(name="jsonl", data_dir=str(tmp_path), train_file="m.jsonl", label_col="tags",
                                    multi_label=True))
    assert ds.classes == ["0", "1", "2"]


def test_empty_text_rows_are_dropped_with_count(tmp_path):
    write_csv(tmp_path / "t.csv", labelled_rows(20) + [",a", "  ,b", '"",a'])
    ds = load_dataset(_csv_cfg(tmp_path))
    assert len(all_texts(ds)) == 20
    assert any("dropped 3 row(s) with empty text" in w for w in ds.warnings)


def test_bad_valid_frac_and_caps(tmp_path):
    write_csv(tmp_path / "t.csv", labelled_rows(20))
    with pytest.raises(UserError, match="valid_frac"):
        load_dataset(_csv_cfg(tmp_path, valid_frac=0.7))
    with pytest.raises(UserError, match="max_docs"):
        load_dataset(_csv_cfg(tmp_path, max_docs=0))
    write_csv(tmp_path / "t.csv", ["text,label", "x,a", "y,b"])
    with pytest.raises(UserError, match="too few"):
        load_dataset(_csv_cfg(tmp_path))


def test_trec_missing_dir_suggests_download(tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset(DatasetConfig(name="trec6", data_dir=str(tmp_path / "trec")))
    assert str(tmp_path / "trec") in str(err.value) and "ulmfit download trec6" in str(err.value)
    (tmp_path / "trec").mkdir()
    with pytest.raises(UserError) as err:
        load_dataset(DatasetConfig(name="trec6", data_dir=str(tmp_path / "trec")))
    assert "train_5500.label" in str(err.value)
