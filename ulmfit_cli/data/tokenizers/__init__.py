"""Text <-> token ids: a word-level tokenizer (fastai rules) and a sentencepiece one.

One job per module: specials.py (the 9 special tokens both kinds share at ids 0..8), word_rules.py
(the word-level text rules and their inverse), word.py and spm.py (the two tokenizers, each
registered by name in TOKENIZERS with the `tokenizer.*` knobs it reads), base.py (the
`Numericalizer` interface, `fit_numericalizer`, `numericalizer_from_state`), pool.py (worker
processes for large corpora). Mapping embeddings onto a new vocabulary is the model's:
ulmfit_cli/models/vocab_mapping.py.
"""
from __future__ import annotations

from .base import (STATE_VERSION, TOKENIZERS, Numericalizer, fit_and_encode, fit_numericalizer,
                   numericalizer_from_state, split_ids)
from .pool import PARALLEL_MIN_CHARS
from .specials import (BOS, BOS_ID, EOS, EOS_ID, FLD, FLD_ID, MAJ_ID, NEWLINE, PAD, PAD_ID, REP_ID, SPECIAL_TOKENS,
                       TK_MAJ, TK_REP, TK_UP, TK_WREP, UNK, UNK_ID, UP_ID, WREP_ID)
from .word import WordNumericalizer  # before spm: the default leads the registry's lists
from .spm import SPM_MODEL_TYPES, SpmNumericalizer
from .word_rules import fix_html, replace_rep, replace_wrep, word_detokenize, word_tokenize

__all__ = [
    "UNK", "PAD", "BOS", "EOS", "FLD", "TK_REP", "TK_WREP", "TK_UP", "TK_MAJ", "SPECIAL_TOKENS", "NEWLINE",
    "UNK_ID", "PAD_ID", "BOS_ID", "EOS_ID", "FLD_ID", "REP_ID", "WREP_ID", "UP_ID", "MAJ_ID", "STATE_VERSION",
    "TOKENIZERS", "Numericalizer", "WordNumericalizer", "SpmNumericalizer", "SPM_MODEL_TYPES", "fit_numericalizer",
    "fit_and_encode", "split_ids",
    "numericalizer_from_state", "fix_html", "replace_rep", "replace_wrep", "word_tokenize", "word_detokenize",
    "PARALLEL_MIN_CHARS",
]
