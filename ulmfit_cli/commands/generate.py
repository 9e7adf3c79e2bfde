"""`ulmfit generate [run=<pretrain or finetune-lm run dir>] prompt="The movie was" n_words=50`.

Samples text from a trained language model. The forward model continues the prompt; the
backward model (direction=bwd) writes what comes *before* it: the prompt is fed reversed, the
model samples leftwards, and the result is printed in reading order (generated words, then the
prompt). xxpad, xxunk, xxbos and xxeos are never drawn, so every sample has exactly n_words new tokens
(a document boundary cannot end a sample early). Without run=, the newest finished finetune-lm
run under outputs_root is used, else the newest pretrain run.
"""
from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from rich.console import Console
from rich.text import Text

from ..data.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID, numericalizer_from_state
from ..errors import UserError
from ..fileutil import atomic_write_bytes
from ..stages.model_io import checkpoints_of, load_model
from ..models.sampling import generate
from ..runtime import resolve_device
from ..stages.sources import load_lm_checkpoint
from .args import parse

USAGE = ('usage: ulmfit generate [run=<pretrain or finetune-lm run dir>] [prompt="The movie was"] [n_words=50] '
         "[n_samples=1] [temperature=1.0] [top_k=0] [top_p=1.0] [seed=N] [direction=fwd|bwd] "
         "[out=FILE.jsonl] [overwrite=false] [outputs_root=outputs] [device=auto]")

LM_STAGES = ("finetune-lm", "pretrain")  # where run= defaults to, in order of preference
BANNED = (PAD_ID, UNK_ID, BOS_ID, EOS_ID)  # never drawn: see the module docstring (xxeos is never in training text)


@dataclass
class GenerateArgs:
    run: Optional[str] = None
    prompt: str = ""
    n_words: int = 50
    n_samples: int = 1
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: Optional[int] = None
    direction: Optional[str] = None  # default: fwd if the run has it, else bwd
    out: Optional[str] = None
    overwrite: bool = False
    outputs_root: str = "outputs"
    device: str = "auto"
    verbose: bool = False


def check_args(a) -> None:
    if a.n_words < 1:
        raise UserError(f"n_words={a.n_words}: at least one word must be generated.", "Pass n_words=1 or more.")
    if a.n_samples < 1:
        raise UserError(f"n_samples={a.n_samples}: at least one sample must be generated.",
                        "Pass n_samples=1 or more.")
    if a.temperature < 0:
        raise UserError(f"temperature={a.temperature} is negative.",
                        "Use temperature=1.0 (the model's distribution), lower to sharpen it, 0 for greedy decoding.")
    if a.top_k < 0:
        raise UserError(f"top_k={a.top_k} is negative.", "Use top_k=0 (off) or the number of tokens to keep, e.g. top_k=40.")
    if not 0 < a.top_p <= 1:
        raise UserError(f"top_p={a.top_p} is outside (0, 1].", "Use top_p=1.0 (off) or a mass such as top_p=0.9.")
    if a.direction not in (None, "fwd", "bwd"):
        raise UserError(f"direction={a.direction} is not a direction.", "Use direction=fwd or direction=bwd.")
    if a.out and Path(a.out).exists() and not a.overwrite:
        raise UserError(f"out={a.out} exists; generate does not overwrite files.",
                        "Choose another out= or pass overwrite=true.")


def newest_lm_run(outputs_root: str) -> Path:
    """The newest finished finetune-lm run under outputs_root, else the newest pretrain run."""
    root = Path(outputs_root)
    for stage in LM_STAGES:
        runs = [p for p in (root / stage).glob("*") if (p / "summary.json").exists()
                and any((p / "checkpoints" / f"{d}.pt").exists() for d in ("fwd", "bwd"))]
        if runs:
            return max(runs, key=lambda p: (p / "summary.json").stat().st_mtime)
    raise UserError(f"run= was not given and no finished finetune-lm or pretrain run was found under {root}/.",
                    "Pass run=<pretrain or finetune-lm run dir> (or outputs_root=<dir> if your runs live "
                    "elsewhere), or train a language model first, e.g. `ulmfit pipeline experiment=quickstart`.")


def load_lm(run: Path, direction: str | None) -> tuple[str, dict]:
    have = checkpoints_of(run, ["fwd", "bwd"], "lm")
    if direction is None:
        direction = have[0]
    elif direction not in have:
        raise UserError(f"run={run} has no {direction} model (checkpoints/{direction}.pt; it has {', '.join(have)}).",
                        f"Use direction={have[0]}, or a run trained with bidirectional={direction} or both.")
    return direction, load_lm_checkpoint(run, direction, "run")


def sample_texts(ckpt: dict, direction: str, a, device) -> tuple[list[str], str]:
    """n_samples texts (prompt included, in reading order) and the decoded prompt."""
    numer = numericalizer_from_state(ckpt["numericalizer"])
    model = load_model(ckpt, device, expect="lm")
    prompt_ids = [int(i) for i in numer.encode(a.prompt)]  # starts with xxbos
    unknown = sum(i == UNK_ID for i in prompt_ids)
    if unknown:
        print(f"note: {unknown} prompt token(s) are not in the model's vocabulary and read as xxunk.", file=sys.stderr)
    if direction == "fwd":
        feed = prompt_ids
    else:  # the backward LM read the whole stream reversed: feed the prompt's words last-to-first
        feed = prompt_ids[1:][::-1] or [BOS_ID]
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(2**31)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    ids = torch.tensor([feed] * a.n_samples, dtype=torch.long, device=device)
    new = generate(model, ids, a.n_words, temperature=a.temperature, top_k=a.top_k, top_p=a.top_p,
                   banned=BANNED, generator=gen).tolist()
    if direction == "fwd":
        seqs = [prompt_ids + row for row in new]
    else:
        seqs = [row[::-1] + prompt_ids[1:] for row in new]
    return [numer.decode(s) for s in seqs], numer.decode(prompt_ids)


def show(texts: list[str], prompt: str, direction: str) -> None:
    console = Console(highlight=False, soft_wrap=True)
    for i, text in enumerate(texts):
        if len(texts) > 1:
            console.print(Text(f"-- sample {i} --", style="dim"))
        if prompt and direction == "fwd" and text.startswith(prompt):
            line = Text.assemble((prompt, "bold"), text[len(prompt):])
        elif prompt and direction == "bwd" and text.endswith(prompt):
            line = Text.assemble(text[: len(text) - len(prompt)], (prompt, "bold"))
        else:
            line = Text(text)
        console.print(line)


def main(argv: list[str]) -> int:
    # the prompt is free text: keep it out of the YAML-typed parser ("a: b", "[x]", "42" stay strings)
    prompts = [x.split("=", 1)[1] for x in argv if x.startswith("prompt=")]
    a = parse(GenerateArgs, [x for x in argv if not x.startswith("prompt=")], USAGE)
    if prompts:
        a.prompt = prompts[-1]
    check_args(a)
    device = resolve_device(a.device)
    run = Path(a.run) if a.run not in (None, "", "latest") else newest_lm_run(a.outputs_root)
    direction, ckpt = load_lm(run, a.direction)
    texts, prompt = sample_texts(ckpt, direction, a, device)
    show(texts, prompt, direction)
    if a.out:
        payload = "".join(json.dumps({"sample": i, "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(texts))
        atomic_write_bytes(Path(a.out), lambda f: f.write(payload.encode("utf-8")))
    sys.stdout.flush()
    return 0
