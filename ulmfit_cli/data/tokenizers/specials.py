"""The 9 special tokens every vocabulary starts with, at ids 0..8, in this order::

    xxunk xxpad xxbos xxeos xxfld xxrep xxwrep xxup xxmaj
"""
from __future__ import annotations

UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ = (
    "xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj")
SPECIAL_TOKENS: list[str] = [UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ]
UNK_ID, PAD_ID, BOS_ID, EOS_ID, FLD_ID, REP_ID, WREP_ID, UP_ID, MAJ_ID = range(9)
NEWLINE = "\n"
