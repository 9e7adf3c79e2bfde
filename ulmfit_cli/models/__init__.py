"""Model construction from the `model` config (ulmfit_cli/config.py's ModelConfig, or a saved
checkpoint's model_config laid over it); nothing here reads or writes files."""
from __future__ import annotations

from .awd_lstm import AWDLSTM
from .heads import LanguageModel, TextClassifier


def build_encoder(cfg, vocab_size: int, pad_id: int) -> AWDLSTM:
    m = cfg.drop_mult
    return AWDLSTM(
        vocab_size, cfg.emb_size, cfg.hidden_size, cfg.n_layers, pad_id,
        hidden_p=cfg.hidden_p * m, input_p=cfg.input_p * m,
        embed_p=cfg.embed_p * m, weight_p=cfg.weight_p * m, emb_init=cfg.emb_init, lstm_kernel=cfg.lstm_kernel,
    )


def build_lm(cfg, vocab_size: int, pad_id: int) -> LanguageModel:
    return LanguageModel(build_encoder(cfg, vocab_size, pad_id), cfg.output_p * cfg.drop_mult, cfg.tie_weights,
                         cfg.fused_softmax)


def build_classifier(cfg, vocab_size: int, pad_id: int, n_classes: int, bptt: int, max_len: int) -> TextClassifier:
    m = cfg.drop_mult
    return TextClassifier(
        build_encoder(cfg, vocab_size, pad_id), n_classes, bptt, max_len, pad_id,
        hidden=cfg.clf_hidden, ps=(cfg.output_p * m, cfg.clf_dropout),
    )


def classifier_group_count(cfg) -> int:
    """len(build_classifier(cfg, ...).layer_groups()): the embedding, each LSTM layer, the head."""
    return cfg.n_layers + 2
