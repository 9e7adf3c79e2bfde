"""`ulmfit download NAME [--dest DIR]`: the command line, the corpora (data/download.py fetches what
data/download_registry.py lists), and the published models.

`ulmfit download wt103` fetches fastai's WikiText-103 AWD_LSTM (wt103-fwd.tgz and wt103-bwd.tgz) the
way the corpora are fetched (streamed, resumable, verified, unpacked atomically into <dest>/wt103/fwd
and bwd/), then imports both directions with import-fastai's own pieces (read_models, import_into) into
<dest>/wt103/run: a pretrain run, built in a temporary folder and renamed once complete, that
`pretrained=wt103` names (stages/sources.py). A second call does nothing; when the run is missing
(removed, or the import was interrupted) it is imported again from the downloaded files. Files that
the import refuses (not an AWD_LSTM, vocabularies that differ) are deleted: the next call fetches
them anew.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from ..data import download as dl
from ..data.download_registry import MARKER, RUN, Corpus, default_data_root, load_registry
from ..errors import UserError
from ..fileutil import file_lock

# The file names fastai's archives hold; fastai itself loads the *.pth and *.pkl it finds there.
PREFERRED = {"*.pth": "lstm_{direction}.pth", "*.pkl": "itos_wt103.pkl"}
DIRECTIONS = ("fwd", "bwd")


def main(argv: list[str]) -> int:
    registry = load_registry()
    args = parse_args(argv, registry)
    if args is None:  # --list
        return 0
    corpus = registry.get(args.name)
    if corpus is None or corpus.kind != "fastai_lm":
        dl.download(args.name, args.dest, registry=registry, force=args.force, retries=args.retries)
        return 0
    dest = Path(args.dest).expanduser() if args.dest else default_data_root()
    target = dest / corpus.name
    run = target / RUN
    root = "" if dest.resolve() == default_data_root().resolve() else f" data_root={dest}"
    if args.force or dl.read_marker(target) is None:
        dl.download(corpus.name, dest, registry=registry, force=args.force, retries=args.retries)
    elif (run / "summary.json").is_file():
        print(f"{corpus.name} is already downloaded and imported: {run} (pretrained={corpus.name}{root}); "
              "nothing to do.")
        return 0
    import_model(corpus.name, target, pretrained=f"{corpus.name}{root}")
    return 0


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def list_corpora(registry: dict[str, Corpus]) -> str:
    lines = []
    for c in registry.values():
        size = _human(sum(r.size for r in c.files)) if all(r.size for r in c.files) else "size unknown"
        checks = {r.check for r in c.files}
        check = ("sha256 verified" if checks == {"sha256"} else "NOT verified (no published sha256)" if "none" in checks
                 else "size + first-MiB md5 verified (no published sha256)")
        lines.append(f"{c.name:<12} {size:>10}  {check}  {c.description}")
        for r in c.files:
            lines.append(f"{'':<14}{r.urls[0]}")
            lines += [f"{'':<16}mirror: {u}" for u in r.urls[1:]]
        if checks == {"size+head_md5"}:  # say what stands in for the missing checksum
            how = [c.files[0].source]
            if c.files[0].expect:
                how.append(f"then each archive must hold {' and '.join(c.files[0].expect)}")
            if c.kind == "fastai_lm":
                how.append("the import reads the weights as tensors only and checks they form one AWD_LSTM whose "
                           "embedding has a row per token of the vocabulary both directions share")
            how.append(f"the full SHA-256 is printed and kept in {c.name}/{MARKER}")
            lines.append(f"{'':<14}verified by: {'; '.join(how)}")
    if os.environ.get("ULMFIT_DOWNLOAD_MIRROR"):
        lines.append(f"\nULMFIT_DOWNLOAD_MIRROR={os.environ['ULMFIT_DOWNLOAD_MIRROR']}: files are fetched from there.")
    return "\n".join(lines)


def parser(names: list[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ulmfit download",
        usage="ulmfit download NAME [--dest DIR] [--force] [--retries N] | ulmfit download --list",
        description="Fetch a corpus into the folder layout the readers expect, resumably and checksummed; "
                    "`wt103` fetches fastai's pretrained WikiText-103 LM (fwd + bwd) and imports it as the "
                    "pretrain run that `pretrained=wt103` names.",
        epilog=(f"corpora: {', '.join(names)}. Partial downloads live in DIR/.partial/ and resume (HTTP Range) "
                "when the command is run again. Environment: ULMFIT_DATA (default DIR), "
                "ULMFIT_DOWNLOAD_MIRROR=URL (fetch every file from URL/<file name>), "
                "ULMFIT_DOWNLOAD_REGISTRY=FILE.json (extra entries)."),
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="corpus to fetch (see --list)")
    p.add_argument("--dest", metavar="DIR", help="data root; the corpus lands in DIR/NAME "
                   "(default: $ULMFIT_DATA or ~/.cache/ulmfit, where the training commands look)")
    p.add_argument("--list", action="store_true", help="list the corpora with their URLs, sizes and checksum status")
    p.add_argument("--force", action="store_true", help="download and replace DIR/NAME even if it is already there")
    p.add_argument("--retries", type=int, default=2, metavar="N",
                   help="retries (each resuming) when the connection breaks (default: 2)")
    return p


def parse_args(argv: list[str], registry: dict[str, Corpus]) -> argparse.Namespace | None:
    """The command line of `ulmfit download`; None once `--list` has been answered."""
    args = parser(list(registry)).parse_args(argv)
    if args.list:
        print(list_corpora(registry))
        return None
    if not args.name:
        raise UserError("`ulmfit download` needs the NAME of a corpus.",
                        f"Use one of: {', '.join(registry)} (`ulmfit download --list` shows their URLs).")
    if args.retries < 0:
        raise UserError(f"--retries {args.retries} is negative.", "Use --retries 0 or more.")
    return args


def _pick(folder: Path, pattern: str, direction: str, name: str) -> Path:
    """The one `pattern` file in `folder` (fastai's own name where there are several)."""
    preferred = folder / PREFERRED[pattern].format(direction=direction)
    if preferred.is_file():
        return preferred
    found = sorted(p for p in folder.glob(pattern) if p.is_file())
    if len(found) == 1:
        return found[0]
    what = (f"no {pattern} file" if not found else
            f"{len(found)} {pattern} files ({', '.join(p.name for p in found)}) and no {preferred.name}")
    raise UserError(f"{folder} holds {what}, so the {direction} model of {name!r} cannot be imported.",
                    f"Run `ulmfit download {name} --force` to fetch it again.")


def import_model(name: str, target: Path, pretrained: str) -> Path:
    """Import <target>/fwd and bwd (fastai's files) into the pretrain run <target>/run."""
    # here, not at the top: the corpora's downloads (and --list) do not load torch
    from .import_fastai import ImportArgs, import_into, read_itos, read_models, report

    run = target / RUN
    files = {d: {pat: _pick(target / d, pat, d, name) for pat in PREFERRED} for d in DIRECTIONS}
    a = ImportArgs(weights=str(files["fwd"]["*.pth"]), vocab=str(files["fwd"]["*.pkl"]),
                   backward=str(files["bwd"]["*.pth"]), out=str(run))
    busy = lambda: UserError(f"Another `ulmfit download {name}` is importing into {run}.",  # noqa: E731
                             "Wait for it to finish, then run this again.")
    with file_lock(target / f".{RUN}.lock", wait=False, remove=True, busy=busy):
        if (run / "summary.json").is_file():  # another process finished it meanwhile
            return run
        if run.exists():  # an earlier import's leftovers: run/ only ever appears complete, with summary.json
            shutil.rmtree(run)
        print(f"importing fastai's AWD_LSTM ({' + '.join(DIRECTIONS)}) into {run} ...", file=sys.stderr, flush=True)
        t0 = time.time()
        try:
            itos, lms, paths = read_models(a)
            if read_itos(files["bwd"]["*.pkl"]) != itos:
                raise UserError(f"{files['bwd']['*.pkl']} is another vocabulary than {files['fwd']['*.pkl']}, "
                                "but both directions must share one.")
        except UserError as e:
            shutil.rmtree(target, ignore_errors=True)
            raise UserError(
                f"The downloaded {name} model cannot be imported: {e.what} Its files were deleted "
                f"({target}); nothing was installed.",
                f"Run `ulmfit download {name}` again to fetch them anew. If the same happens, the files at its URLs "
                "(`ulmfit download --list`, or ULMFIT_DOWNLOAD_MIRROR) are not fastai's AWD_LSTM: check them and "
                "any proxy.") from e
        summary = import_into(run, a, itos, lms, paths, t0)
    report(run, a, summary, pretrained=pretrained)
    return run
