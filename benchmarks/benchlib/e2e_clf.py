"""The classifier commands of the end-to-end bench (benchlib/e2e.py): `ulmfit train-clf` and
`ulmfit predict`. For each: its command line, the documents' ids (made as the command makes
them, saved for fastai's worker) and the figures read back from its run dir."""
from __future__ import annotations

import csv
import json
import random
import re
import sys
from pathlib import Path

from .common import IMDB_TRAIN_DOCS, SIZES, imdb_texts
from .e2e import Setup, base_overrides
from .e2e_lm import save_ids



def unfreeze_steps(args) -> list[int]:
    return [int(k) for k in args.e2e_unfreeze.split(",")]


def clf_bs(size: str, args) -> int:
    return args.e2e_clf_bs or SIZES[size]["bs"]


def clf_overrides(size: str, args, steps: int, lm: Path) -> list[str]:
    """`ulmfit train-clf` overrides: BPT3C at the size's bptt and max_len, one epoch of `steps`
    batches per unfreezing phase over exactly steps x bs training reviews (every phase sees them
    all), bs validation reviews, steps x bs test reviews (max_docs caps test as well as train)."""
    s, bs, phases = SIZES[size], clf_bs(size, args), len(unfreeze_steps(args)) + 1
    n_train = steps * bs
    return ["dataset=imdb", f"lm={lm}", *base_overrides(size, args), f"train.bs={bs}", f"train.bptt={s['bptt']}",
            f"train.max_len={s['max_len']}", f"train.epochs={phases}", f"train.max_steps_per_epoch={steps}",
            f"unfreeze.steps=[{args.e2e_unfreeze}]", f"dataset.max_train_examples={n_train}",
            f"dataset.max_docs={n_train}", f"dataset.valid_frac={bs / IMDB_TRAIN_DOCS!r}"]


def prepare_clf(size: str, preset: str, args, chain, prep: bool) -> Setup:
    """train-clf's splits as its stage reads them, numericalized with the vocabulary of the
    finetune-lm run the chain hands on; fastai gets that run through `ulmfit export-fastai`."""
    from ulmfit_cli.config import compose
    from ulmfit_cli.data.token_cache import encode
    from ulmfit_cli.data.tokenizers import numericalizer_from_state
    from ulmfit_cli.stages.clf import label_ids
    from ulmfit_cli.stages.sources import load_lm_checkpoint
    from ulmfit_cli.stages.train_clf import SPLITS, labelled_dataset

    lm, steps, bs = chain.run_dir("finetune-lm"), 1 if prep else args.e2e_clf_steps, clf_bs(size, args)
    overrides = clf_overrides(size, args, steps, lm)
    cfg = compose("train_clf", overrides)
    data = labelled_dataset(cfg)
    numer = numericalizer_from_state(load_lm_checkpoint(lm, "fwd", "lm")["numericalizer"])
    docs = {s: encode(numer, getattr(data, f"{s}_texts"), None) for s in SPLITS}
    ys = {f"{s}_labels": label_ids(getattr(data, f"{s}_labels"), list(data.classes), False) for s in SPLITS}
    path = Path(args.out) / f"e2e_ids_train-clf_{size}_{preset}.npz"
    counts = save_ids(path, docs, **ys)
    phases = len(unfreeze_steps(args)) + 1
    if counts["train_docs"] != steps * bs:
        raise RuntimeError(f"train-clf would read {counts['train_docs']} training reviews, not {steps * bs}")
    st = Setup("train-clf", size, preset, args, bs, steps, path, ["train-clf", *overrides], read_clf,
               vocab=len(numer.itos), unit="docs/s", units=counts["train_docs"] * phases,
               tokens=counts["train_tokens"] * phases, prep={**counts, "phases": phases,
                                                             "max_len": SIZES[size]["max_len"]})
    if chain.fastai_py:
        st.fastai = {"export": str(chain.export("finetune-lm")), "unfreeze": unfreeze_steps(args)}
    return st


def clf_times(rows: list[dict]) -> dict:
    """Loop and evaluation seconds from metrics.csv, whose elapsed_s is the trainer's clock when
    each row was written: a train row's less the valid row's before it is that epoch's training;
    a valid row's less its train row's, and the test row's less the last valid row's, evaluation."""
    train = [r for r in rows if r["split"] == "train"]
    valid = [r for r in rows if r["split"] == "valid"]
    test = [r for r in rows if r["split"] == "test"]
    starts = [0.0] + [float(v["elapsed_s"]) for v in valid[:-1]]
    loop = sum(float(t["elapsed_s"]) - s for t, s in zip(train, starts))
    evals = sum(float(v["elapsed_s"]) - float(t["elapsed_s"]) for t, v in zip(train, valid))
    evals += float(test[-1]["elapsed_s"]) - float(valid[-1]["elapsed_s"]) if test else 0.0
    return {"loop_s": loop, "eval_s": evals, "epochs": len(train), "steps_seen": int(train[-1]["step"]),
            "epoch_throughputs": [float(t["throughput"]) for t in train]}


def read_clf(st: Setup, run_dir: Path) -> dict:
    """metrics.csv's rows and summary.json, checked against the documents fastai is given."""
    with open(run_dir / "metrics.csv") as f:
        times = clf_times(list(csv.DictReader(f)))
    summary = json.loads((run_dir / "summary.json").read_text())
    seen = (summary["n_train"], times["epochs"], times["steps_seen"])
    want = (st.prep["train_docs"], st.prep["phases"], st.steps * st.prep["phases"])
    if seen != want:
        return {"status": f"error: the run's training reviews, epochs and steps {seen} differ from the bench's "
                          f"{want}; see {run_dir}"}
    logged_s = sum(seen[0] / t for t in times.pop("epoch_throughputs"))  # each epoch trains every review once
    res = summary["results"]["fwd"]
    return {"status": "ok", **times, "throughput": st.units / logged_s, "units_seen": st.units,
            "tokens_seen": st.tokens, "docs_seen": st.units, "val_accuracy": res["val_accuracy"],
            "test_accuracy": res["test_accuracy"], "run_wall_s": summary["wall_time_s"]}


def write_reviews(data_root: str, n: int, seed: int, path: Path) -> None:
    """n IMDb test reviews (a seeded sample, in file order) as a one-column CSV `text`."""
    texts = imdb_texts("test", data_root)
    keep = sorted(random.Random(seed).sample(range(len(texts)), min(n, len(texts))))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text"])
        w.writerows([texts[i]] for i in keep)


def prepare_predict(size: str, preset: str, args, chain, prep: bool) -> Setup:
    """The reviews as `ulmfit predict` reads and encodes them (its own read_texts, the classifier's
    numericalizer), for the train-clf runs the chain hands on (ulmfit's, and fastai's own)."""
    from ulmfit_cli.checkpoints import load_checkpoint
    from ulmfit_cli.commands.predict import read_texts
    from ulmfit_cli.data.tokenizers import numericalizer_from_state

    clf, bs = chain.run_dir("train-clf"), clf_bs(size, args)
    reviews = chain.scratch() / f"imdb_test_{args.e2e_predict_docs}_seed{args.seed}.csv"
    if not reviews.exists():
        write_reviews(args.data_root, args.e2e_predict_docs, args.seed, reviews)
    numer = numericalizer_from_state(load_checkpoint(clf / "checkpoints" / "fwd.pt")["numericalizer"])
    docs = numer.encode_many(read_texts(str(reviews), ["text"]))
    path = Path(args.out) / f"e2e_ids_predict_{size}_{preset}.npz"
    counts = save_ids(path, {"test": docs})
    argv = ["predict", f"run={clf}", f"input={reviews}", f"bs={bs}", f"device={args.device}"]
    st = Setup("predict", size, preset, args, bs, 0, path, argv, read_predict, launch=predict_launch,
               vocab=len(numer.itos), unit="docs/s", units=counts["test_docs"], tokens=counts["test_tokens"],
               prep=counts)
    fastai_clf = chain.run_dir("train-clf", "fastai")
    st.fastai = {"model": str(fastai_clf / "fastai_clf.pth") if fastai_clf else None}
    return st


def predict_launch(st: Setup, precision: str, run_dir: Path) -> list[str]:
    """`ulmfit predict ... verbose=true` (it logs how long the classifiers took) writing its CSV into run_dir."""
    from .e2e import ulmfit_command

    run_dir.mkdir(parents=True)
    return [*ulmfit_command(), *st.argv, f"precision={precision}", "verbose=true",
            f"output={run_dir / 'predictions.csv'}"]


def read_predict(st: Setup, run_dir: Path) -> dict:
    """The predictions written (one row per review; then deleted: they repeat every review's text)
    and the time its classifiers took (its verbose line)."""
    csv.field_size_limit(sys.maxsize)
    with open(run_dir / "predictions.csv", encoding="utf-8", newline="") as f:
        n = sum(1 for _ in csv.DictReader(f))
    (run_dir / "predictions.csv").unlink()
    if n != st.units:
        return {"status": f"error: predict wrote {n} rows for {st.units} reviews; see {run_dir}"}
    log = (st.out / "logs" / f"{run_dir.name}.log").read_text()
    loop_s = float(re.findall(r"classified in ([0-9.]+) s", log)[-1])
    return {"status": "ok", "throughput": n / loop_s, "loop_s": loop_s, "eval_s": None, "units_seen": n,
            "tokens_seen": st.tokens, "docs_seen": n}
