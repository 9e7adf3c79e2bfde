"""Typed schemas for every config group, registered in Hydra's ConfigStore.

Each primary config (conf/pretrain.yaml, ...) starts its defaults list with the matching
`base_*` schema, so a misspelt key or a wrong type is refused by Hydra before any work starts.

One source for every default: the schema below. Its values are the paper's (and so those of
each group's default option: model=awd_lstm, schedule=stlr, unfreeze=gradual, tokenizer=word),
including keys only one option reads (tokenizer.vocab_size, read by spm alone). A YAML file in
conf/ sets only what differs from them: a group option sets its `name` and what makes it that
option (model/tiny.yaml: its sizes); a stage's primary config sets that stage's values (the LM
stages' lr 0.004); an experiment sets its recipe's. tests/test_config_defaults.py fails on a YAML
line that repeats a schema default, the copy that could drift from it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from .errors import UserError


@dataclass
class ModelConfig:
    name: str = "awd_lstm"  # the architecture (AWD-LSTM); model=tiny|small|awd_lstm pick sizes
    emb_size: int = 400  # embedding size (and the last LSTM layer's output size, tied to the decoder)
    hidden_size: int = 1152  # hidden units of each LSTM layer but the last
    n_layers: int = 3  # LSTM layers
    # The five AWD-LSTM dropouts, each multiplied by drop_mult.
    output_p: float = 0.4  # dropout on the last LSTM layer's output (before the decoder / head)
    hidden_p: float = 0.3  # dropout between LSTM layers
    input_p: float = 0.4  # dropout on the embedding output
    embed_p: float = 0.05  # embedding dropout: whole word vectors zeroed
    weight_p: float = 0.5  # weight drop (DropConnect) on the LSTMs' hidden-to-hidden weights
    drop_mult: float = 1.0  # multiplies all five dropouts (the paper tunes this one knob)
    tie_weights: bool = True  # the LM decoder shares the embedding matrix
    # Embedding init: uniform(-emb_init, emb_init); 0.1 as the reference. Small embeddings (emb 64)
    # learn word distinctions far slower from 0.1: the tiny model uses 1.0.
    emb_init: float = 0.1
    # LSTM kernel: auto = torch's fused kernel (cuDNN/oneDNN), except bf16 training on CPU of models
    # with 1,024+ hidden units, which runs a bf16 step loop measured faster (models/accel/lstm_kernels.py);
    # fused = always torch's (the reference); step = the step loop for bf16 CPU training at any size.
    lstm_kernel: str = "auto"
    # The LM's decoder + softmax cross-entropy in row chunks (models/accel/fused_softmax.py);
    # false = the reference, the full logits and F.cross_entropy.
    fused_softmax: bool = True
    # Classifier head
    clf_hidden: int = 50  # hidden units of the classifier head's first linear block
    # The head's dropouts are those of the reference (fastai's get_text_classifier, and the paper-era
    # script's drops=[dps[4], 0.1]): output_p x drop_mult before the first block, clf_dropout,
    # unscaled, before the second.
    clf_dropout: float = 0.1


@dataclass
class DatasetConfig:
    name: str = MISSING  # reader: sample, csv, jsonl, hf, wikitext2, wikitext103, imdb, trec6, ag_news, dbpedia, yelp_bi, yelp_full
    data_dir: Optional[str] = None  # default: <data root>/<name>; data root = $ULMFIT_DATA or ~/.cache/ulmfit
    train_file: Optional[str] = None  # csv/jsonl/parquet: the training file (required by dataset=csv|jsonl)
    valid_file: Optional[str] = None  # csv/jsonl: a validation file; null = valid_frac of train
    test_file: Optional[str] = None  # csv/jsonl: a test file; null = no test split
    text_cols: List[str] = field(default_factory=lambda: ["text"])  # columns joined into the text (a list, even of one)
    label_col: Optional[str] = "label"  # the label column; null = unlabelled (LM text only)
    multi_label: bool = False  # several labels per example, separated by label_sep (sigmoid head)
    label_sep: str = ";"  # multi_label: the separator between one example's labels
    valid_frac: float = 0.1  # share of train held out for validation where there is no validation split
    split_seed: int = 42  # seed of that hold-out split (fixed apart from the run's seed)
    max_train_examples: Optional[int] = None  # keep this many labelled training examples (low-shot studies)
    max_docs: Optional[int] = None  # cap every split (quick experiments)
    use_unsup: bool = True  # include unlabelled text (e.g. IMDb unsup) in LM fine-tuning
    use_test_for_lm: bool = False  # add the test split's text (never its labels) to LM fine-tuning
    # The general-domain dataset config `ulmfit pipeline` pretrains on for this task.
    pretrain_corpus: str = "wikitext103"
    # Unlabelled text added to LM fine-tuning (off with use_unsup=false): .txt (a document a line),
    # .csv/.tsv/.jsonl/.parquet (text_cols joined) or a folder of .txt files (a document a file).
    lm_files: List[str] = field(default_factory=list)
    path: Optional[str] = None  # hf: a hub name or a local save_to_disk folder
    subset: Optional[str] = None  # hf: the configuration of a dataset that has several (glue: sst2)
    # hf: {train|valid|test|lm: its split}; null = train, validation, test where present. Typed Any:
    # OmegaConf cannot merge a command-line {..} into a null (or struct) Dict[str, str] node.
    split_map: Optional[Any] = None


@dataclass
class TokenizerConfig:
    name: str = "word"  # an option of conf/tokenizer/ (each registers the knobs it reads: data/tokenizers/)
    max_vocab: int = 60000  # word: the most frequent tokens kept
    min_freq: int = 2  # word: tokens seen fewer times become xxunk
    # sentencepiece
    vocab_size: int = 15000
    model_type: str = "unigram"  # unigram | bpe
    character_coverage: float = 0.9999  # spm: share of characters the model covers
    max_sentences: int = 2000000  # spm: sentences sampled to train the SentencePiece model
    max_chars: int = 50000000  # spm: about this many characters of them at most (memory: ~15 bytes each)


@dataclass
class ScheduleConfig:
    name: str = "stlr"  # an option of conf/schedule/ (each registers the knobs it reads: training/schedules.py)
    lr: float = 0.01  # eta_max
    cut_frac: float = 0.1  # STLR: share of the steps spent warming up
    ratio: float = 32.0  # STLR: how much smaller the lowest LR is than lr
    decay: float = 2.6  # discriminative fine-tuning: eta^(l-1) = eta^l / decay
    discriminative: bool = True  # one LR per layer group, lower by decay each group down
    # one_cycle (fastai-style cosine)
    pct_start: float = 0.25
    div: float = 25.0  # one_cycle: the starting LR is lr / div
    div_final: float = 1e5  # one_cycle: the final LR is lr / div_final


@dataclass
class UnfreezeConfig:
    name: str = "gradual"  # an option of conf/unfreeze/ (each registers the knobs it reads: training/param_groups.py)
    # gradual: number of top layer groups trainable in each phase before all are. Paper §3.3 opens
    # one more group from the top each epoch (conf/unfreeze/gradual.yaml says why this, not [1, 2, 3]).
    steps: List[int] = field(default_factory=lambda: [1, 2, 3, 4])
    epochs_per_phase: int = 1  # gradual / chain_thaw: epochs each partly frozen phase trains


@dataclass
class BidirectionalConfig:
    directions: List[str] = field(default_factory=lambda: ["fwd"])  # fwd, bwd or both; the classifier averages the two


@dataclass
class TrainConfig:
    epochs: int = 1  # epochs to train (gradual unfreezing's phases come out of this budget)
    bs: int = 64  # batch size (LM: parallel token streams; classifier: documents)
    bptt: int = 70  # tokens per LM step (the mean, when variable_bptt); BPT3C chunk length
    max_len: int = 1400  # BPT3C: tokens whose states get gradients
    variable_bptt: bool = True  # LM: vary the sequence length around bptt (AWD-LSTM's trick)
    beta1: float = 0.7  # Adam beta1 (the paper's 0.7)
    beta2: float = 0.99  # Adam beta2
    eps: float = 1e-5  # Adam epsilon
    weight_decay: float = 0.01  # decoupled weight decay (AdamW)
    clip: float = 0.4  # gradient norm clipping
    alpha: float = 2.0  # AR
    beta: float = 1.0  # TAR
    max_steps_per_epoch: Optional[int] = None  # cap the steps of each epoch (quick runs); null = all
    eval_bs: Optional[int] = None  # batch size for evaluation; null = bs
    on_nan: str = "stop"  # stop | skip


@dataclass
class CheckpointConfig:
    every_steps: int = 0  # 0 = only at epoch ends
    keep: int = 2  # progress checkpoints kept per direction (checkpoints/last/)


@dataclass
class DistributedConfig:
    """Data-parallel training (ulmfit_cli/distributed/); under torchrun DDP is on whatever this says."""

    name: str = "none"  # none | ddp (ulmfit starts distributed.nproc processes with torchrun)
    nproc: Optional[int] = None  # processes on this node; null = one per visible GPU
    backend: str = "auto"  # auto (nccl on CUDA, gloo on CPU) | nccl | gloo
    timeout_min: int = 30  # a collective waiting longer than this fails the run


@dataclass
class TensorBoardConfig:
    save_dir: Optional[str] = None  # null = <run dir>/tensorboard; a directory = <dir>/<run dir under outputs_root>


@dataclass
class MlflowConfig:
    """Unset keys fall back to MLflow's own environment variables, then to these defaults."""

    tracking_uri: Optional[str] = None  # null = $MLFLOW_TRACKING_URI, else MLflow's default (./mlflow.db)
    experiment_name: Optional[str] = None  # null = $MLFLOW_EXPERIMENT_NAME (or _ID), else ulmfit-<stage>
    run_name: Optional[str] = None  # null = "<stage> <dataset> <directions>" (+ " #<job>" in a sweep)
    tags: Dict[str, str] = field(default_factory=dict)  # extra tags on each MLflow run
    log_artifacts: bool = True  # summary.json and, for classifiers, predictions_test.csv


@dataclass
class WandbConfig:
    """Unset keys fall back to W&B's own environment variables (WANDB_*), then to these defaults."""

    project: Optional[str] = None  # null = $WANDB_PROJECT, else ulmfit-<stage>
    entity: Optional[str] = None  # null = $WANDB_ENTITY, else the account's default
    mode: Optional[str] = None  # online | offline | disabled; null = $WANDB_MODE, else online
    dir: Optional[str] = None  # null = $WANDB_DIR, else the run dir (W&B adds wandb/<run>/)
    group: Optional[str] = None  # null = the sweep (<stage>-<sweep dir name>) for -m jobs
    run_name: Optional[str] = None  # null = "<stage> <dataset> <directions>" (+ " #<job>" in a sweep)
    tags: List[str] = field(default_factory=list)  # extra tags on each W&B run
    log_artifacts: bool = True  # upload summary.json and, for classifiers, predictions_test.csv


@dataclass
class LoggerConfig:
    """Trackers beside metrics.csv (always written): `logger=[tensorboard,mlflow]` fills the nodes of
    those selected (conf/logger/*.yaml); a null node is a tracker not in use."""

    tensorboard: Optional[TensorBoardConfig] = None  # logger=tensorboard
    mlflow: Optional[MlflowConfig] = None  # logger=mlflow
    wandb: Optional[WandbConfig] = None  # logger=wandb


@dataclass
class StageConfig:
    stage: str = MISSING  # the stage this config runs (set by each stage's schema)
    seed: int = 0  # seeds Python, NumPy and torch (and each direction's model)
    # true: deterministic kernels on GPU (cuDNN, cuBLAS workspace, torch.use_deterministic_algorithms); slower
    deterministic: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | bf16 | fp16
    threads: Optional[int] = None  # CPU threads for torch; null = torch's default (one per core)
    verbose: bool = False  # DEBUG logging, and full tracebacks behind clear errors
    progress: str = "auto"  # auto | bar | log | none
    data_root: Optional[str] = None  # where corpora live; null = $ULMFIT_DATA, else ~/.cache/ulmfit
    # Cache of numericalized corpora (ulmfit_cli/data/token_cache.py): null = <data root>/token_cache,
    # a directory, or `off`.
    token_cache: Optional[str] = None
    outputs_root: str = "outputs"  # where run dirs go: <outputs_root>/<stage>/<time>
    resume: Optional[str] = None  # a run dir (or a sweep dir) to continue, or auto; null = a new run
    # A final metric of summary.json (`fwd.val_error`, `ensemble.val_error`, `fwd.val_perplexity`, ...): when set,
    # the Hydra task returns it as a float, the value a sweeper such as Optuna optimises (experiment=optuna_lr).
    objective: Optional[str] = None
    # A free label a study gives its runs (studies/paper_study.py: table6/clf_last); `ulmfit report --paper`
    # groups runs by it.
    tag: Optional[str] = None
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    unfreeze: UnfreezeConfig = field(default_factory=UnfreezeConfig)
    bidirectional: BidirectionalConfig = field(default_factory=BidirectionalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    # callbacks=[early_stopping,keep_best]: {name: a `_target_` node} (conf/callbacks/) the Trainer runs.
    # Open, so that a user's own class fits; each node's keys are checked against its class's
    # arguments before training (stages/wiring.py), which refuses a misspelt one.
    callbacks: Dict[str, Any] = field(default_factory=dict)
    experiment: Optional[Any] = None  # the experiment file chosen (experiment=NAME); its keys land where they belong
    # Values that differ by stage, named: per_stage.epochs = {pretrain: 10, finetune-lm: 10, train-clf: 14},
    # read as train.epochs: ${per_stage.epochs.${stage}} (experiment files), overridden as
    # per_stage.epochs.train-clf=20.
    per_stage: Dict[str, Any] = field(default_factory=dict)


@dataclass
class PretrainConfig(StageConfig):
    stage: str = "pretrain"


@dataclass
class FinetuneLMConfig(StageConfig):
    stage: str = "finetune-lm"
    pretrained: Optional[str] = "latest"  # run dir, "latest", or null (from scratch)


@dataclass
class TrainClfConfig(StageConfig):
    stage: str = "train-clf"
    lm: Optional[str] = "latest"  # finetune-lm run dir, "latest", or null (from scratch)
    # Fit TF-IDF (1-2-grams) + logistic regression on the same split and report it beside the model.
    tfidf_baseline: bool = True


def register() -> None:
    """The schemas, in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="base_pretrain", node=PretrainConfig)
    cs.store(name="base_finetune_lm", node=FinetuneLMConfig)
    cs.store(name="base_train_clf", node=TrainClfConfig)


def conf_dir() -> str:
    """The configs shipped inside the package (an installed wheel or sdist), else conf/ beside the
    package (a checkout, where the build has not yet mapped it in: an editable install)."""
    here = Path(__file__).resolve().parent
    for cand in (here / "conf", here.parent / "conf"):
        if (cand / "pretrain.yaml").exists():
            return str(cand)
    raise UserError(f"ulmfit's configs were found neither inside the package ({here / 'conf'}) nor beside it "
                    f"({here.parent / 'conf'}): the install is incomplete.",
                    "Reinstall it (`pip install --force-reinstall <the wheel>`, or `pip install -e .` in a checkout).")


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    """A stage's config as `ulmfit <stage> <overrides>` would run with, outside a Hydra app."""
    register()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides)

