"""Word-level text rules (like fastai.text.core), applied in this order by `word_tokenize`:

1. `fix_html`: HTML entities / ``<br />`` -> newline, WikiText artefacts (``<unk>`` -> xxunk,
   `` @-@ `` -> ``-``, `` @,@ `` -> ``,``, `` @.@ `` -> ``.``, ``n 't`` -> ``n't``),
   ``...`` -> `` …``.
2. `replace_rep`: a non-space character repeated 4+ times -> `` xxrep {n} {c} ``
   (``"!!!!"`` -> ``xxrep 4 !``; ``"sooooo"`` -> ``s xxrep 5 o``).
3. Unicode NFC; curly apostrophes -> ``'``; newlines (with the whitespace around them) -> one ``"\\n"`` token.
4. Regex word tokenizer: abbreviations (``U.S.``, ``e.g.``, ``Mr.``), numbers with separators
   (``1,000.5``), contractions split as spaCy does (``don't`` -> ``do n't``, ``it's`` -> ``it 's``,
   ``can't`` -> ``ca n't``), words (letters/digits, inner apostrophes as in ``O'Brien``),
   ``\\n``, and every other non-space character as its own token (so ``/`` and ``#`` are
   always split, as fastai's `spec_add_spaces`; extra spaces never make tokens).
5. `replace_wrep` (on the tokens, before case folding): the same word 4+ times in a row ->
   ``xxwrep {n} {word}``.
6. Case: a token of 2+ characters in ALL CAPS -> ``xxup token``; a Capitalised token of 2+
   characters (no other capital) -> ``xxmaj token``; every token is lower-cased
   (so ``"I"`` -> ``"i"`` with no marker, as fastai).
7. ``xxbos`` first.

``"This is GREAT!!!!"`` -> ``xxbos xxmaj this is xxup great xxrep 4 !``. `word_detokenize` undoes them.
"""
from __future__ import annotations

import html
import re
import unicodedata
from typing import Sequence

from .specials import BOS, PAD, SPECIAL_TOKENS, TK_MAJ, TK_REP, TK_UP, TK_WREP, UNK


def fix_html(x: str) -> str:
    """Various messy things seen in documents (fastai's fix_html, plus WikiText artefacts)."""
    if "&" in x:
        while "&amp;" in x:  # also undoes double escaping (&amp;amp;)
            x = x.replace("&amp;", "&")
        x = html.unescape(x)
    # entities whose '&' was lost upstream (fastai's list), line breaks, WikiText artefacts
    x = (x.replace("#39;", "'").replace("#146;", "'").replace("nbsp;", " ")
         .replace("#36;", "$").replace("\\n", "\n").replace("quot;", "'").replace("<br />", "\n")
         .replace("<br/>", "\n").replace("<br>", "\n").replace('\\"', '"').replace("<unk>", UNK)
         .replace(" @.@ ", ".").replace(" @-@ ", "-").replace(" @,@ ", ",")
         .replace("n 't", "n't").replace("...", " …"))
    return x


_re_rep = re.compile(r"(\S)\1{3,}")


def _rep_sub(m: re.Match) -> str:
    return f" {TK_REP} {len(m.group(0))} {m.group(1)} "


def replace_rep(t: str) -> str:
    """A non-space character repeated 4+ times: ``cccc`` -> `` xxrep 4 c ``."""
    return _re_rep.sub(_rep_sub, t)


_re_wrep = re.compile(r"(?<!\w)(\w+)(?:\s+\1(?!\w)){3,}")


def _wrep_sub(m: re.Match) -> str:
    return f" {TK_WREP} {len(m.group(0).split())} {m.group(1)} "


def replace_wrep(t: str) -> str:
    """Text-level form of the word-repetition rule: ``w w w w`` -> `` xxwrep 4 w ``.

    The tokenizer applies the same rule on its tokens (faster); this is kept for reference/reuse.
    """
    return _re_wrep.sub(_wrep_sub, t)


_re_newline = re.compile(r"\n\s*")

# Order matters: the first alternative that matches at a position wins.
_ABBREV = r"(?:mrs|mr|ms|dr|prof|jr|sr|st|vs|etc|inc|ltd)\."
_TOKEN_RE = re.compile(
    r"(?:[^\W\d_]\.){2,}"                          # U.S.  e.g.  i.e.
    rf"|(?i:{_ABBREV})"                            # Mr.  Dr.  etc.
    r"|\d+(?:[.,:]\d+)+"                           # 1,000  3.14  12:30
    r"|[^\W_]+?(?=[nN]'[tT](?![^\W_]))"            # do|n't  ca|n't
    r"|[nN]'[tT](?![^\W_])"                        # n't
    r"|'(?:[sSmMdD]|[lL][lL]|[vV][eE]|[rR][eE])(?![^\W_])"   # 's 'm 'd 'll 've 're
    r"|[^\W_]+(?:'(?!(?:[sSmMdD]|[lL][lL]|[vV][eE]|[rR][eE])(?![^\W_]))[^\W_]+)*"  # words, O'Brien
    r"|\n"
    r"|[^\w\s]|_"                                  # any other character, one at a time
)
_CONTRACTIONS = frozenset(["n't", "'s", "'m", "'d", "'ll", "'ve", "'re"])


def _collapse_wrep(toks: list[str]) -> list[str]:
    """Runs of 4+ identical word tokens -> xxwrep n word."""
    out: list[str] = []
    i, n = 0, len(toks)
    while i < n:
        t = toks[i]
        j = i + 1
        while j < n and toks[j] == t:
            j += 1
        run = j - i
        if run >= 4 and t[0] != "\n" and (t[0].isalnum() or t[0] == "_"):
            out.extend((TK_WREP, str(run), t))
        else:
            out.extend(toks[i:j])
        i = j
    return out


def word_tokenize(text: str) -> list[str]:
    """Apply the word-level rules and return the tokens, starting with xxbos."""
    text = fix_html(text)
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)  # so "e\u0301" stays one letter
    text = _re_rep.sub(_rep_sub, text)
    if "\u2019" in text:
        text = text.replace("\u2019", "'")
    if "\n" in text:
        text = _re_newline.sub("\n", text)
    toks = _TOKEN_RE.findall(text)
    # word repetition: only pay for the slow pass when two neighbours are equal
    if len(toks) >= 4 and any(map(str.__eq__, toks, toks[1:])):
        toks = _collapse_wrep(toks)
    out = [BOS]
    app = out.append
    for t in toks:
        lw = t.lower()
        if lw != t:
            if len(t) > 1 and lw not in _CONTRACTIONS:
                if t.isupper():
                    app(TK_UP)
                elif t[0].isupper() and t[1:] == lw[1:]:
                    app(TK_MAJ)
        app(lw)
    return out


_re_detok_before = re.compile(r" ([.,;:!?%)\]}…]|n't\b|'(?:s|m|d|ll|ve|re)\b)")
_re_detok_after = re.compile(r"([(\[{$]) ")
_re_detok_nl = re.compile(r" ?\n ?")
_SPECIAL_SET = frozenset(SPECIAL_TOKENS)


def _is_wordish(t: str) -> bool:
    return bool(t) and (t[-1].isalnum() or t[-1] == "_")


def word_detokenize(tokens: Sequence[str]) -> str:
    """Approximate inverse of `word_tokenize` (markers undone, spaces before punctuation removed).

    Also for sampled text: a case or repetition marker that is not followed by what it needs
    (a word; a count and a token) is dropped; a character repetition that followed a word
    (``s xxrep 5 o``, from ``sooooo``) is glued back onto it; double quotes are paired
    (opening one sticks to the next token, closing one to the previous); the lone pronoun
    ``i`` (lower-cased without a marker by the tokenizer) is written ``I``.
    """
    out: list[str] = []
    glue: list[bool] = []  # glue[k]: out[k] is joined to out[k-1] without a space

    def push(w: str, g: bool = False) -> None:
        if out and out[-1] == '"' and not glue[-1]:
            g = True  # the token after an opening quote
        out.append(w)
        glue.append(g)

    i, n = 0, len(tokens)
    open_quote = False
    while i < n:
        t = tokens[i]
        if t in (BOS, PAD):
            i += 1
        elif t in (TK_MAJ, TK_UP):
            if i + 1 < n and tokens[i + 1] not in _SPECIAL_SET:
                nxt = tokens[i + 1]
                push(nxt[:1].upper() + nxt[1:] if t == TK_MAJ else nxt.upper())
                i += 2
            else:
                i += 1  # dangling marker
        elif t in (TK_REP, TK_WREP):
            if i + 2 < n and tokens[i + 1].isdigit() and tokens[i + 2] not in _SPECIAL_SET:
                cnt, w = int(tokens[i + 1]), tokens[i + 2]
                after_word = i > 0 and tokens[i - 1] not in _SPECIAL_SET and bool(out) and _is_wordish(out[-1])
                push(w * cnt if t == TK_REP else " ".join([w] * cnt), t == TK_REP and _is_wordish(w) and after_word)
                i += 3
            else:
                i += 1  # dangling marker
        elif t == '"':
            push(t, open_quote)  # a closing quote sticks to the token before it
            open_quote = not open_quote
            i += 1
        else:
            push("I" if t == "i" else t)
            i += 1
    s = "".join(w if (k == 0 or glue[k]) else " " + w for k, w in enumerate(out))
    s = _re_detok_before.sub(r"\1", s)
    s = _re_detok_after.sub(r"\1", s)
    s = _re_detok_nl.sub("\n", s)
    return s.strip(" ")
