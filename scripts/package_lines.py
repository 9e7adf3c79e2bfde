#!/usr/bin/env python
"""Lines of ulmfit_cli per folder at a git revision: code lines (a line holding a token that is
not a comment, a docstring or blank) and raw lines.

    python scripts/package_lines.py [REV]     # default HEAD; run inside the repository
"""
from __future__ import annotations

import ast
import io
import subprocess
import sys
import tokenize
from collections import Counter


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def docstring_lines(src: str) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def code_lines(src: str) -> int:
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    docs, code = docstring_lines(src), set()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type not in skip:
            code.update(n for n in range(tok.start[0], tok.end[0] + 1) if n not in docs)
    return len(code)


def main() -> int:
    rev = sys.argv[1] if len(sys.argv) > 1 else "HEAD"
    code, raw = Counter(), Counter()
    for path in git("ls-tree", "-r", "--name-only", rev, "ulmfit_cli").split():
        if path.endswith(".py"):
            src = git("show", f"{rev}:{path}")
            folder = path.rsplit("/", 1)[0] if path.count("/") > 1 else "ulmfit_cli/ (top)"
            code[folder] += code_lines(src)
            raw[folder] += src.count("\n")
    for folder in sorted(raw):
        print(f"{folder:32s} code {code[folder]:5d} raw {raw[folder]:5d}")
    print(f"{'TOTAL':32s} code {sum(code.values()):5d} raw {sum(raw.values()):5d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
