"""`ulmfit download NAME [--dest DIR]`: the corpora (data/download.py), and the published models.

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

import shutil
import sys
import time
from pathlib import Path

from ..data import download as dl
from ..errors import UserError
from ..fileutil import file_lock

# The file names fastai's archives hold; fastai itself loads the *.pth and *.pkl it finds there.
PREFERRED = {"*.pth": "lstm_{direction}.pth", "*.pkl": "itos_wt103.pkl"}
DIRECTIONS = ("fwd", "bwd")


def main(argv: list[str]) -> int:
    registry = dl.load_registry()
    args = dl.parse_args(argv, registry)
    if args is None:  # --list
        return 0
    corpus = registry.get(args.name)
    if corpus is None or corpus.kind != "fastai_lm":
        dl.download(args.name, args.dest, registry=registry, force=args.force, retries=args.retries)
        return 0
    dest = Path(args.dest).expanduser() if args.dest else dl.default_data_root()
    target = dest / corpus.name
    run = target / dl.RUN
    root = "" if dest.resolve() == dl.default_data_root().resolve() else f" data_root={dest}"
    if args.force or dl.read_marker(target) is None:
        dl.download(corpus.name, dest, registry=registry, force=args.force, retries=args.retries)
    elif (run / "summary.json").is_file():
        print(f"{corpus.name} is already downloaded and imported: {run} (pretrained={corpus.name}{root}); "
              "nothing to do.")
        return 0
    import_model(corpus.name, target, pretrained=f"{corpus.name}{root}")
    return 0


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

    run = target / dl.RUN
    files = {d: {pat: _pick(target / d, pat, d, name) for pat in PREFERRED} for d in DIRECTIONS}
    a = ImportArgs(weights=str(files["fwd"]["*.pth"]), vocab=str(files["fwd"]["*.pkl"]),
                   backward=str(files["bwd"]["*.pth"]), out=str(run))
    busy = lambda: UserError(f"Another `ulmfit download {name}` is importing into {run}.",  # noqa: E731
                             "Wait for it to finish, then run this again.")
    with file_lock(target / f".{dl.RUN}.lock", wait=False, remove=True, busy=busy):
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
