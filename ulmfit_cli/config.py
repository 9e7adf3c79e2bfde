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

import importlib.util
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
    name: str = "awd_lstm"
    emb_size: int = 400
    hidden_size: int = 1152
    n_layers: int = 3
    # The five AWD-LSTM dropouts, each multiplied by drop_mult.
    output_p: float = 0.4
    hidden_p: float = 0.3
    input_p: float = 0.4
    embed_p: float = 0.05
    weight_p: float = 0.5
    drop_mult: float = 1.0
    tie_weights: bool = True
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
    clf_hidden: int = 50
    # The head's dropouts are those of the reference (fastai's get_text_classifier, and the paper-era
    # script's drops=[dps[4], 0.1]): output_p x drop_mult before the first block, clf_dropout,
    # unscaled, before the second.
    clf_dropout: float = 0.1


@dataclass
class DatasetConfig:
    name: str = MISSING  # reader: sample, csv, jsonl, hf, wikitext2, wikitext103, imdb, trec6, ag_news, dbpedia, yelp_bi, yelp_full
    data_dir: Optional[str] = None  # default: <data root>/<name>; data root = $ULMFIT_DATA or ~/.cache/ulmfit
    train_file: Optional[str] = None
    valid_file: Optional[str] = None
    test_file: Optional[str] = None
    text_cols: List[str] = field(default_factory=lambda: ["text"])
    label_col: Optional[str] = "label"
    multi_label: bool = False
    label_sep: str = ";"
    valid_frac: float = 0.1
    split_seed: int = 42
    max_train_examples: Optional[int] = None
    max_docs: Optional[int] = None  # cap every split (quick experiments)
    use_unsup: bool = True  # include unlabelled text (e.g. IMDb unsup) in LM fine-tuning
    use_test_for_lm: bool = False
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
    name: str = "word"  # word | spm
    max_vocab: int = 60000
    min_freq: int = 2
    # sentencepiece
    vocab_size: int = 15000
    model_type: str = "unigram"  # unigram | bpe
    character_coverage: float = 0.9999
    max_sentences: int = 2000000


@dataclass
class ScheduleConfig:
    name: str = "stlr"  # stlr | one_cycle | constant
    lr: float = 0.01  # eta_max
    cut_frac: float = 0.1
    ratio: float = 32.0
    decay: float = 2.6  # discriminative fine-tuning: eta^(l-1) = eta^l / decay
    discriminative: bool = True
    # one_cycle (fastai-style cosine)
    pct_start: float = 0.25
    div: float = 25.0
    div_final: float = 1e5


@dataclass
class UnfreezeConfig:
    name: str = "gradual"  # gradual | none | last | chain_thaw
    # gradual: number of top layer groups trainable in each phase before all are. Paper §3.3 opens
    # one more group from the top each epoch (conf/unfreeze/gradual.yaml says why this, not [1, 2, 3]).
    steps: List[int] = field(default_factory=lambda: [1, 2, 3, 4])
    epochs_per_phase: int = 1


@dataclass
class BidirectionalConfig:
    directions: List[str] = field(default_factory=lambda: ["fwd"])


@dataclass
class TrainConfig:
    epochs: int = 1
    bs: int = 64
    bptt: int = 70
    max_len: int = 1400  # BPT3C: tokens whose states get gradients
    variable_bptt: bool = True
    beta1: float = 0.7
    beta2: float = 0.99
    eps: float = 1e-5
    weight_decay: float = 0.01
    clip: float = 0.4
    alpha: float = 2.0  # AR
    beta: float = 1.0  # TAR
    max_steps_per_epoch: Optional[int] = None
    eval_bs: Optional[int] = None
    on_nan: str = "stop"  # stop | skip


@dataclass
class CheckpointConfig:
    every_steps: int = 0  # 0 = only at epoch ends
    keep: int = 2


@dataclass
class DistributedConfig:
    """Data-parallel training (ulmfit_cli/distributed.py); under torchrun DDP is on whatever this says."""

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
    tags: Dict[str, str] = field(default_factory=dict)
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
    tags: List[str] = field(default_factory=list)
    log_artifacts: bool = True


@dataclass
class LoggerConfig:
    """Trackers beside metrics.csv (always written): `logger=[tensorboard,mlflow]` fills the nodes of
    those selected (conf/logger/*.yaml); a null node is a tracker not in use."""

    tensorboard: Optional[TensorBoardConfig] = None
    mlflow: Optional[MlflowConfig] = None
    wandb: Optional[WandbConfig] = None


@dataclass
class StageConfig:
    stage: str = MISSING
    seed: int = 0
    # true: deterministic kernels on GPU (cuDNN, cuBLAS workspace, torch.use_deterministic_algorithms); slower
    deterministic: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | bf16 | fp16
    threads: Optional[int] = None
    verbose: bool = False
    progress: str = "auto"  # auto | bar | log | none
    data_root: Optional[str] = None
    # Cache of numericalized corpora (ulmfit_cli/data/token_cache.py): null = <data root>/token_cache,
    # a directory, or `off`.
    token_cache: Optional[str] = None
    outputs_root: str = "outputs"
    resume: Optional[str] = None
    # A final metric of summary.json (`fwd.val_error`, `ensemble.val_error`, `fwd.val_perplexity`, ...): when set,
    # the Hydra task returns it as a float, the value a sweeper such as Optuna optimises (experiment=optuna_lr).
    objective: Optional[str] = None
    # A free label a study gives its runs (scripts/paper_study.py: table6/clf_last); `ulmfit report --paper`
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
    experiment: Optional[Any] = None
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
    """conf/ beside the package in a checkout/editable install, else the copy shipped inside it."""
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "conf", here / "conf"):
        if (cand / "pretrain.yaml").exists():
            return str(cand)
    raise UserError("ulmfit's conf/ directory was not found next to the package.",
                    "Reinstall with `pip install -e .` from the repository root.")


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    """A stage's config as `ulmfit <stage> <overrides>` would run with, outside a Hydra app."""
    register()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides)


def argv_value(argv: list[str], key: str, default: str | None = None) -> str | None:
    """The value of the last `key=value` on the command line (Hydra's override order)."""
    return next((a.split("=", 1)[1] for a in reversed(argv) if a.startswith(f"{key}=")), default)


MULTIRUN_FLAGS = ("-m", "--multirun")


def is_multirun(argv: list[str]) -> bool:
    """Whether a stage's command line asks Hydra for a sweep."""
    return any(a in MULTIRUN_FLAGS or a.lower() == "hydra.mode=multirun" for a in argv)


def module_installed(module: str) -> bool:
    """Whether an optional module (an extra's, a Hydra plugin's) can be imported."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing (hydra_plugins for hydra_plugins.x)
        return False


def job_sweep_dir(job_dir: Path, subdir: str | None) -> Path:
    """The sweep dir of a job's dir (job dir = hydra.sweep.dir / hydra.sweep.subdir): the subdir's
    depth stripped, since re-resolving ${now:} in a worker could differ."""
    parts = len(Path(subdir).parts) if subdir else 0
    return job_dir.parents[parts - 1] if parts else job_dir
