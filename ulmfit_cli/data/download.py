"""The fetcher behind `ulmfit download NAME`: resumable HTTP, verification and atomic unpacking
of the files the download registry (download_registry.py) lists.

How a download goes:

1. Each file streams (with a rich progress bar) into `<dest>/.partial/<file>.part`. When a `.part`
   is already there, the request carries `Range: bytes=N-`: a `206` answer is appended, a `200`
   (server without range support) restarts the file. Interruptions are retried `--retries` times,
   each resuming where the last stopped; a failed command keeps the `.part` so that running it
   again resumes too.
2. The whole file's SHA-256 is checked against the registry before anything is unpacked. A
   mismatch deletes the file and fails with the expected and actual hash. Where the publisher
   gives no SHA-256 but records the size and the MD5 of the first MiB (fastai's own check, as for
   its model zoo), those two are checked instead (`head_md5`), the same way; the file's SHA-256 is
   then printed and kept in the marker. Entries with neither (`sha256=None`) are downloaded with
   a warning that prints the file's SHA-256.
3. Archives (zip, tar.gz/tgz, plain files) unpack into a temporary folder inside `<dest>`, which is
   renamed to `<dest>/<name>` only once complete: an interrupted unpack leaves no half corpus.
   A file's `expect` patterns must match in what it unpacked, else the archive is deleted, nothing
   is installed and the error names what is missing.
   `<dest>/<name>/.ulmfit-download.json` (URL, SHA-256, date) marks a finished download; with it
   present a second `ulmfit download NAME` does nothing but say where the corpus is.

Environment variables:

    ULMFIT_DATA=DIR                 default --dest (shared with the readers).
    ULMFIT_DOWNLOAD_MIRROR=URL      fetch every file from URL instead of its registry host: a file's
                                    URL becomes URL + its file name, e.g. with
                                    ULMFIT_DOWNLOAD_MIRROR=http://127.0.0.1:8000/corpora/ the imdb
                                    archive is http://127.0.0.1:8000/corpora/aclImdb_v1.tar.gz.
                                    Checksums still apply. Used by the tests and for local mirrors.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from ..errors import UserError, disk_error
from ..fileutil import file_lock
from .download_registry import AUTO, MARKER, Corpus, Remote, default_data_root, load_registry

__all__ = ["download", "read_marker", "sha256_file"]


PARTIAL = ".partial"
HEAD = 1 << 20  # fastai's check hashes the first MiB
CHUNK = 1 << 16
TIMEOUT_S = 60
# wikitext.smerity.com answers urllib's default User-Agent with 403.
USER_AGENT = "Mozilla/5.0 (compatible; ulmfit-cli download; +https://github.com/fastai/fastai)"
# Answers worth retrying: the server is busy or broken right now, not the URL wrong.
TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}


def _urls(remote: Remote) -> tuple[str, ...]:
    """$ULMFIT_DOWNLOAD_MIRROR replaces every address by MIRROR + the file's name."""
    mirror = os.environ.get("ULMFIT_DOWNLOAD_MIRROR")
    if not mirror:
        return remote.urls
    return (mirror.rstrip("/") + "/" + remote.filename,)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def head_md5_file(path: Path) -> str:
    """MD5 of the first MiB: the hash half of fastai's download check (`_check_file`, fastdownload's `path_stats`)."""
    with open(path, "rb") as fh:
        return hashlib.md5(fh.read(HEAD)).hexdigest()


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _disk_error(e: OSError, what: Path) -> UserError | OSError:
    return disk_error(e, str(what),
                      full_fix="Free some space (the partial download is kept and resumes), or pick another disk "
                               "with --dest DIR (then pass data_root=DIR to the training commands).",
                      access_fix="Make it writable, or pick a writable folder with --dest DIR "
                                 "(then pass data_root=DIR to the training commands).")


def _lock(path: Path, name: str):
    """One `ulmfit download NAME` at a time per --dest: two writers would corrupt the .part file."""
    return file_lock(path, wait=False, remove=True, busy=lambda: UserError(
        f"Another `ulmfit download {name}` is already writing into {path.parent.parent}.",
        "Wait for it to finish (or stop it), then run this again."))


class _Transient(Exception):
    """Worth another try: the connection broke, timed out, or the server is busy."""


class _Fatal(Exception):
    """This URL will not work (404, 403, ...); another mirror might."""


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """`bytes 100-199/1000` -> (100, 1000); `bytes */1000` -> (None, 1000)."""
    m = re.match(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _stream(opener, url: str, part: Path, size_hint: int | None, progress, task) -> None:
    """Append the rest of `url` to `part` (all of it when the server ignores Range)."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = opener.open(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        with e:
            if e.code == 416 and have:
                _, total = _content_range(e.headers.get("Content-Range"))
                if total == have:
                    return  # the .part was already complete
                part.unlink()
                raise _Transient("the server could not resume the partial file; starting it over") from e
            reason = f"HTTP {e.code} {e.reason}"
            raise (_Transient(reason) if e.code in TRANSIENT_HTTP else _Fatal(reason)) from e
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise _Transient(f"cannot connect ({reason})") from e
    with resp:
        if resp.status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != have:
                part.unlink()
                raise _Transient(f"the server resumed at byte {start}, not {have}; starting over")
            mode = "ab"
        else:  # 200: the whole file (a server without Range support) -> start over
            have, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        progress.update(task, total=total or size_hint, completed=have)
        with open(part, mode) as fh:
            while True:
                try:
                    chunk = resp.read1(CHUNK)  # what has arrived: a timeout loses nothing
                except (OSError, http.client.HTTPException) as e:  # reset, timeout, IncompleteRead
                    raise _Transient(f"the connection broke after {have:,} bytes ({str(e) or type(e).__name__})") from e
                if not chunk:
                    break
                fh.write(chunk)
                have += len(chunk)
                progress.update(task, advance=len(chunk))
    if total is not None and have < total:
        raise _Transient(f"the connection closed after {have:,} of {total:,} bytes")


def _try_url(opener, url: str, remote: Remote, part: Path, progress, task, retries: int,
             retry_wait: float) -> str | None:
    """None once `part` holds the whole file, else why `url` failed."""
    for attempt in range(retries + 1):
        try:
            _stream(opener, url, part, remote.size, progress, task)
            return None
        except _Fatal as e:
            return f"{url} answered {e}"
        except _Transient as e:
            if attempt == retries:
                return f"{url}: {e}"
            progress.console.print(f"[yellow]{remote.filename}:[/] {e}; retrying ({attempt + 1} of {retries}), "
                                   "resuming from the partial file.")
            time.sleep(retry_wait * (attempt + 1))
    return None  # not reached


def _fetch(corpus: Corpus, remote: Remote, partial: Path, progress, retries: int, retry_wait: float,
           target: Path) -> tuple[Path, str, str]:
    """Download one file into `partial/` and verify it: (path, URL used, its SHA-256)."""
    done = partial / remote.filename  # verified on an earlier run that then failed to unpack
    part = partial / (remote.filename + ".part")
    urls = _urls(remote)
    if done.exists():
        actual = sha256_file(done)
        if _mismatch(remote, done, actual) is None:
            return done, urls[0], actual
        done.unlink()

    opener = urllib.request.build_opener()  # reads the *_proxy variables now
    task = progress.add_task(remote.filename, total=remote.size)
    failures: list[str] = []
    for url in urls:  # mirrors in turn; each with its retries, all resuming the same .part
        failure = _try_url(opener, url, remote, part, progress, task, retries, retry_wait)
        if failure is None:
            break
        failures.append(failure)
    else:
        raise _download_error(corpus, remote, part, failures, target)

    actual = sha256_file(part)
    got = part.stat().st_size
    mismatch = _mismatch(remote, part, actual)
    if mismatch is not None:
        part.unlink()
        what, expected, actual = mismatch
        raise UserError(
            f"{what} mismatch for {remote.filename} (downloaded from {url}, {got:,} bytes): expected {expected}, "
            f"got {actual}. The file was deleted; nothing was unpacked.",
            f"Re-run `ulmfit download {corpus.name}` to fetch it again. If it fails the same way, something "
            "between you and the server changes the file: check the URL (and ULMFIT_DOWNLOAD_MIRROR) and any "
            "proxy or captive portal.",
        )
    os.replace(part, done)
    return done, url, actual


def _mismatch(remote: Remote, path: Path, sha256: str) -> tuple[str, str, str] | None:
    """(what, expected, got) where `path` is not the file the registry describes; None when it is."""
    if remote.sha256 is not None:
        return None if sha256 == remote.sha256 else ("SHA-256", remote.sha256, sha256)
    got = path.stat().st_size
    if remote.size is not None and got != remote.size:
        return "Size", f"{remote.size:,} bytes", f"{got:,} bytes"
    if remote.head_md5 is not None:
        head = head_md5_file(path)
        if head != remote.head_md5:
            return "First-MiB MD5 (fastai's check)", remote.head_md5, head
    return None


def _download_error(corpus: Corpus, remote: Remote, part: Path, failures: list[str], target: Path) -> UserError:
    kept = part.stat().st_size if part.exists() else 0
    resume = f" {kept:,} bytes are kept in {part}; running the command again resumes from there." if kept else ""
    by_hand = (f"or download {remote.urls[0]} by hand, unpack it into {target} (or any folder, then point "
               "dataset.data_dir= at it).")
    if corpus.kind == "fastai_lm":
        by_hand = (f"or download {remote.urls[0]} by hand, unpack it and turn its .pth and .pkl into a pretrain "
                   "run with `ulmfit import-fastai --weights ... --vocab ...` (then pretrained=<that run>).")
    if all(" answered HTTP " in f for f in failures):  # the server said no: retrying will not help
        fix = ("The file is not (or no longer) at that address, or a proxy refuses it: set "
               f"ULMFIT_DOWNLOAD_MIRROR=URL to fetch {remote.filename} from a mirror, {by_hand}")
    else:
        fix = (f"Re-run `ulmfit download {corpus.name}` (it resumes) once the connection works (check any proxy), "
               f"{by_hand}")
    return UserError(f"Could not download {remote.filename} for {corpus.name!r}: {'; '.join(failures)}.{resume}", fix)


def _unsafe(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return p.is_absolute() or ".." in p.parts


def _extract(archive: Path, kind: str, into: Path) -> None:
    """Unpack a zip or tar archive; a damaged or malicious one is deleted (re-running fetches it anew)."""
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                names = zf.namelist()
                bad = next((n for n in names if _unsafe(n)), None)
                if bad is None:
                    zf.extractall(into)
        else:
            with tarfile.open(archive, "r:*") as tf:
                members = tf.getmembers()
                bad = next((m.name for m in members if _unsafe(m.name)
                            or (m.issym() or m.islnk()) and _unsafe(m.linkname)), None)
                if bad is None and hasattr(tarfile, "data_filter"):
                    tf.extractall(into, members=members, filter="data")
                elif bad is None:  # Python < 3.10.12: plain files and folders only
                    tf.extractall(into, members=[m for m in members if m.isfile() or m.isdir()])
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as e:
        archive.unlink(missing_ok=True)
        raise UserError(f"{archive.name} is not a readable {kind} archive ({e}); it was deleted and nothing "
                        "was unpacked.", "Run the command again to fetch it anew.") from e
    if bad is not None:
        archive.unlink(missing_ok=True)
        raise UserError(f"{archive.name} holds an unsafe path {bad!r} (outside the folder it unpacks into); "
                        "it was deleted and nothing was unpacked.",
                        "Check where the archive came from (the URL, ULMFIT_DOWNLOAD_MIRROR, any proxy).")


def _unpacked_root(raw: Path, remote: Remote) -> Path:
    """The folder of an unpacked archive whose contents are installed (`remote.subdir`)."""
    if remote.subdir == AUTO:  # as fastai's untar_data: one top-level folder is the content's folder
        top = list(raw.iterdir())
        return top[0] if len(top) == 1 and top[0].is_dir() else raw
    src = raw / remote.subdir if remote.subdir else raw
    if not src.is_dir():
        top = sorted(p.name for p in raw.iterdir())
        raise UserError(f"{remote.filename} has no folder {remote.subdir!r} (its top level holds {top}).",
                        "The registry entry's subdir does not match the archive; report this.")
    return src


def _check_expected(remote: Remote, path: Path, folder: Path) -> None:
    """Every `remote.expect` pattern matches in what the archive unpacked, else the archive is deleted."""
    missing = [pat for pat in remote.expect if not any(folder.glob(pat))]
    if not missing:
        return
    held = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    shown = ", ".join(held[:12]) + (f" and {len(held) - 12} more" if len(held) > 12 else "") if held else "nothing"
    path.unlink(missing_ok=True)
    raise UserError(
        f"{remote.filename} does not hold what it should: no {', no '.join(repr(m) for m in missing)} in it "
        f"(it holds {shown}). It was deleted; nothing was installed.",
        "Run the command again to fetch it anew; if the same happens, the file at that URL (or at "
        "ULMFIT_DOWNLOAD_MIRROR) is not the one the registry describes: check the URL and any proxy.")


def _install(corpus: Corpus, fetched: list[tuple[Remote, Path, str, str]], dest: Path, force: bool) -> Path:
    """Unpack into a temp folder inside `dest`, then rename it to `dest/<name>` in one step."""
    target = dest / corpus.name
    tmp = Path(tempfile.mkdtemp(prefix=f".{corpus.name}-", suffix=".unpacking", dir=dest))
    try:
        out = tmp / corpus.name
        out.mkdir()
        for i, (remote, path, _, _) in enumerate(fetched):
            into = out / remote.into if remote.into else out
            into.mkdir(parents=True, exist_ok=True)
            kind = remote.archive_kind
            if kind == "file":
                shutil.copyfile(path, into / remote.filename)
                continue
            raw = tmp / f"x{i}"
            _extract(path, kind, raw)
            src = _unpacked_root(raw, remote)
            _check_expected(remote, path, src)
            for child in src.iterdir():
                os.replace(child, into / child.name)
        for name, text in corpus.inline.items():
            (out / name).write_text(text, encoding="utf-8")
        marker = {
            "name": corpus.name,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "files": [{"file": r.filename, "url": url, "sha256": sha, "verified": r.check != "none",
                       "check": r.check, "bytes": p.stat().st_size} for r, p, url, sha in fetched],
        }
        (out / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        if target.exists() or target.is_symlink():
            if not force and not (target.is_dir() and not any(target.iterdir())):
                raise UserError(f"{target} appeared while unpacking.", "Run the command again.")
            if target.is_dir() and not target.is_symlink():
                os.replace(target, tmp / "replaced")  # deleted with tmp
            else:
                target.unlink()
        os.replace(out, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def read_marker(target: Path) -> dict | None:
    try:
        return json.loads((target / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _already_there(target: Path, name: str, force: bool) -> bool:
    marker = None if force else read_marker(target)
    if marker is not None:
        print(f"{name} is already downloaded in {target} (on {marker.get('date', '?')}); nothing to do.")
    return marker is not None


def _fetch_all(corpus: Corpus, partial: Path, target: Path, retries: int, retry_wait: float,
               console) -> list[tuple[Remote, Path, str, str]]:
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    fetched = []
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        for remote in corpus.files:
            path, url, sha = _fetch(corpus, remote, partial, progress, retries, retry_wait, target)
            fetched.append((remote, path, url, sha))
    for remote, _, url, sha in fetched:
        if remote.check == "none":
            console.print(f"[bold yellow]warning:[/] {remote.filename} (from {url}) could not be verified: no "
                          f"published SHA-256 is known for it. Its SHA-256 is {sha}; compare it with a trusted "
                          "copy before relying on it.", markup=True)
        elif remote.check == "size+head_md5":
            console.print(f"{remote.filename}: size ({remote.size:,} bytes) and MD5 of the first MiB match the "
                          f"publisher's record (no SHA-256 is published); its SHA-256 is {sha} (kept in {MARKER}).",
                          markup=False)
    return fetched


def download(name: str, dest: str | os.PathLike | None = None, *, registry: dict[str, Corpus] | None = None,
             force: bool = False, retries: int = 2, retry_wait: float = 1.0, console=None) -> Path:
    """Fetch corpus `name` into `dest/<name>` (see the module docstring); returns that folder."""
    registry = load_registry() if registry is None else registry
    corpus = registry.get(name)
    if corpus is None:
        raise UserError(f"Unknown corpus {name!r} for `ulmfit download`.",
                        f"Use one of: {', '.join(registry)} (`ulmfit download --list` shows URLs and sizes). "
                        "dataset=sample needs no download; dataset=csv/jsonl read your own files.")
    console = console or _stderr_console()
    dest = Path(dest).expanduser() if dest else default_data_root()
    target = dest / corpus.name
    if _already_there(target, name, force):
        return target
    if target.exists() and not force and not (target.is_dir() and not any(target.iterdir())):
        raise UserError(
            f"{target} already exists but was not made by `ulmfit download` (it has no {MARKER}); it was left alone.",
            f"The readers use it as it is. To replace it, move it away or run `ulmfit download {name} --force`.",
        )
    partial = dest / PARTIAL
    try:
        partial.mkdir(parents=True, exist_ok=True)
        try:
            with _lock(partial / f"{name}.lock", name):
                if _already_there(target, name, force):  # another run finished while this one started
                    return target
                fetched = _fetch_all(corpus, partial, target, retries, retry_wait, console)
                console.print(f"unpacking {name} into {target} ...")
                _install(corpus, fetched, dest, force)
                for _, path, _, _ in fetched:
                    path.unlink(missing_ok=True)
        finally:
            try:
                partial.rmdir()  # only when empty: partial files (this corpus's or others') stay
            except OSError:
                pass
    except OSError as e:
        raise _disk_error(e, partial) from e
    checks = {r.check for r in corpus.files}
    verified = ("checksums verified" if checks == {"sha256"} else "NOT verified, see the warning" if "none" in checks
                else "sizes and first-MiB MD5s verified; no SHA-256 is published")
    print(f"{name}: ready in {target} ({verified}).")
    root = "" if dest.resolve() == default_data_root().resolve() else f" data_root={dest}"
    if corpus.kind == "corpus":  # a model's next step is its import (commands/download.py)
        stage = "pretrain" if name.startswith("wikitext") else "train-clf"
        print(f"Use it with: ulmfit {stage} dataset={name}{root}")
    return target
