"""Multi-label classification: sigmoid/BCE head, threshold tuned on validation,
micro/macro F1, predict lists every label above the threshold, in input order."""
from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest

from conftest import FAST, assert_clean_error, ulmfit
from ulmfit_cli.training.scoring import f1_scores, most_frequent_label_f1, scores, tune_threshold

POOLS = {"sports": "goal match team coach league score stadium".split(),
         "politics": "vote senate party election minister law parliament".split(),
         "science": "atom cell physics theory lab experiment molecule".split()}
FILLER = "the a today people said about new report many week city some big after".split()


def make_doc(rng: random.Random, labels) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(8, 20))]
    for lab in labels:
        words += rng.sample(POOLS[lab], 2)
    rng.shuffle(words)
    return " ".join(words)


def make_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        labels = rng.sample(sorted(POOLS), rng.choice([1, 1, 2, 2, 3]))
        rows.append({"text": make_doc(rng, labels), "tags": "|".join(labels)})
    return rows


def write_csv(path, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["text", "tags"])
        w.writeheader()
        w.writerows(rows)


# ----------------------------------------------------------------------------- metrics, known values


def test_f1_known_values():
    gold = np.array([[1, 0, 1], [0, 1, 0]], dtype=bool)
    pred = np.array([[1, 0, 0], [0, 1, 1]], dtype=bool)
    # tp=2, fp=1, fn=1 -> micro 4/6; per class: 1, 1, 0 -> macro 2/3
    micro, macro = f1_scores(pred, gold)
    assert micro == pytest.approx(4 / 6)
    assert macro == pytest.approx(2 / 3)
    s = scores(np.where(pred, 0.9, 0.1), gold.astype(np.float32), multi_label=True, threshold=0.5)
    assert s["f1_micro"] == pytest.approx(4 / 6) and s["threshold"] == 0.5
    assert s["accuracy"] == 0.0  # no row exactly right


def test_threshold_is_tuned_to_the_data():
    # Positives score 0.3, negatives 0.1: 0.5 finds nothing, the tuned cut-off separates them.
    gold = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.float32)
    probs = np.where(gold > 0, 0.3, 0.1)
    assert scores(probs, gold, True, 0.5)["f1_micro"] == 0.0
    t = tune_threshold(probs, gold)
    assert 0.1 < t <= 0.3
    assert scores(probs, gold, True, t)["f1_micro"] == 1.0
    # A flat optimum stays near 0.5 rather than drifting to the grid's edge.
    assert tune_threshold(np.where(gold > 0, 0.99, 0.01), gold) == 0.5


def test_most_frequent_label_baseline():
    train = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    gold = np.array([[1, 0], [0, 1]], dtype=np.float32)
    assert most_frequent_label_f1(train, gold) == pytest.approx(0.5)  # tp 1, fp 1, fn 1


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("multilabel")
    write_csv(cwd / "train.csv", make_rows(500, seed=1))
    test = make_rows(80, seed=2)
    test[0]["tags"] = "sports|weather"  # a label the classifier never saw
    write_csv(cwd / "test.csv", test)
    proc = ulmfit("train-clf", *FAST, "lm=null", "dataset=csv", "dataset.train_file=train.csv",
                  "dataset.test_file=test.csv", "dataset.label_col=tags", "dataset.multi_label=true",
                  "dataset.label_sep='|'", "dataset.max_docs=null", "train.epochs=6", "train.bs=32",
                  "bidirectional=both", cwd=cwd, timeout=600)
    run = next((cwd / "outputs" / "train-clf").iterdir())
    return cwd, run, proc


def test_multilabel_trains_and_beats_the_baselines(multilabel_run):
    cwd, run, _ = multilabel_run
    s = json.loads((run / "summary.json").read_text())
    assert s["classes"] == ["politics", "science", "sports"]
    assert s["all_negative_test_f1_micro"] == 0.0
    for name in ("fwd", "bwd", "ensemble"):
        r = s["results"][name]
        assert 0.05 <= r["val_threshold"] <= 0.95 and r["test_threshold"] == r["val_threshold"]
        assert r["test_f1_micro"] > s["most_frequent_label_test_f1_micro"] + 0.15, (name, r, s)
        assert r["test_f1_macro"] > 0.5
    metrics = (run / "metrics.csv").read_text()
    assert "f1_micro" in metrics.splitlines()[0]
    preds = list(csv.DictReader(open(run / "predictions_test.csv", encoding="utf-8")))
    assert len(preds) == 80 and preds[1]["label"] == "|".join(sorted(make_rows(80, seed=2)[1]["tags"].split("|")))


def test_unknown_test_label_is_a_clear_warning(multilabel_run):
    _, run, proc = multilabel_run
    s = json.loads((run / "summary.json").read_text())
    assert any("weather" in w and "not seen in train" in w for w in s["warnings"]), s["warnings"]
    assert "weather" in proc.stderr + proc.stdout


def test_predict_lists_labels_above_threshold_in_input_order(multilabel_run):
    cwd, run, _ = multilabel_run
    rng = random.Random(7)
    wanted = [["sports"], ["politics", "science"], ["science"], ["sports", "politics"], ["politics"]] * 4
    texts = [make_doc(rng, labs) + " the" * rng.choice([0, 30, 200]) for labs in wanted]  # lengths shuffled
    (cwd / "in.txt").write_text("\n".join(texts) + "\n")
    out = ulmfit("predict", f"run={run}", "input=in.txt", "output=-", "format=jsonl", cwd=cwd).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in rows] == texts
    summary = json.loads((run / "summary.json").read_text())
    assert all(r["threshold"] == summary["results"]["ensemble"]["val_threshold"] for r in rows)
    for r in rows:
        assert all(r[f"p_{lab}"] >= r["threshold"] for lab in r["label"])
        assert list(r["scores"]) == r["label"]  # most probable first, each with its probability
    hits = sum(set(r["label"]) == set(w) for r, w in zip(rows, wanted))
    assert hits >= 14, [(r["label"], w) for r, w in zip(rows, wanted)]
    csv_out = ulmfit("predict", f"run={run}", "input=in.txt", "output=-", "threshold=0.0", cwd=cwd).stdout
    first = next(csv.DictReader(csv_out.splitlines()))
    assert first["label"].count("|") == 2 and first["scores"].count("=") == 3  # every label is above 0


def test_evaluate_multilabel_uses_the_tuned_threshold(multilabel_run):
    cwd, run, _ = multilabel_run
    res = json.loads(ulmfit("evaluate", f"run={run}", cwd=cwd).stdout)
    s = json.loads((run / "summary.json").read_text())["results"]["ensemble"]
    assert res["threshold"] == s["val_threshold"]
    assert res["f1_micro"] == pytest.approx(s["test_f1_micro"], abs=1e-6)
    # The test file again as a new input: read with the run's label column and '|' separator.
    proc = ulmfit("evaluate", f"run={run}", "input=test.csv", cwd=cwd)
    assert json.loads(proc.stdout)["f1_micro"] == pytest.approx(res["f1_micro"], abs=1e-9)
    assert "['weather']; those labels are left out of the scores" in proc.stderr


@pytest.mark.integration
def test_multilabel_label_column_missing_is_clear(tmp_path):
    write_csv(tmp_path / "train.csv", make_rows(50, seed=3))
    proc = ulmfit("train-clf", *FAST, "lm=null", "dataset=csv", "dataset.train_file=train.csv",
                  "dataset.label_col=labels", "dataset.multi_label=true", cwd=tmp_path, check=False)
    assert_clean_error(proc, "labels", "tags")
    assert not (tmp_path / "outputs" / "train-clf").exists() or not any(
        (p / "summary.json").exists() for p in (tmp_path / "outputs" / "train-clf").iterdir())
