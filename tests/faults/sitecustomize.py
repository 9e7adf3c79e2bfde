"""Test-only fault injection for the real console script in a subprocess.

Loaded only when a test puts this folder on PYTHONPATH (tests/test_bad_inputs.py); it does
nothing unless one of these is set:

    ULMFIT_FAULT_ENOSPC=<dir>:<bytes>   once <bytes> have been written (by this process) to files
                                        under <dir>, every further write there raises
                                        OSError(ENOSPC), as a full disk does.
    ULMFIT_FAULT_CUDA_OOM=1             the classifier's forward raises torch.OutOfMemoryError,
                                        as a CUDA allocation that does not fit does.
    ULMFIT_FAULT_KILL_AT_STEP=<n>       the training process SIGKILLs itself right after optimiser
                                        step n (after that step's callbacks: a checkpoint due at n
                                        is written), as `kill -9` at a known point would.

Files opened for writing through open()/io.open()/os.fdopen() are wrapped (that covers Python
code, logging, csv, Hydra and torch.save to a file object); reads are untouched.
"""
import builtins
import errno
import io
import os

_spec = os.environ.get("ULMFIT_FAULT_ENOSPC")
if _spec:
    _root, _, _budget = _spec.rpartition(":")
    _root = os.path.realpath(_root) + os.sep
    _left = [int(_budget)]
    _real_open = io.open

    class _FillsUp:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            n = len(data.encode("utf-8", "replace")) if isinstance(data, str) else memoryview(data).nbytes
            if n > _left[0]:
                _left[0] = 0
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            _left[0] -= n
            return self._f.write(data)

        def writelines(self, lines):
            for line in lines:
                self.write(line)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._f.__exit__(*exc)

        def __iter__(self):
            return iter(self._f)

        def __getattr__(self, name):
            return getattr(self._f, name)

    def _path_of(file):
        try:
            path = os.readlink(f"/proc/self/fd/{file}") if isinstance(file, int) else os.fspath(file)
            return os.path.realpath(path)
        except (OSError, TypeError):
            return ""

    def _open(file, mode="r", *args, **kwargs):
        f = _real_open(file, mode, *args, **kwargs)
        if any(c in mode for c in "wax+") and _path_of(file).startswith(_root):
            return _FillsUp(f)
        return f

    builtins.open = io.open = _open


if os.environ.get("ULMFIT_FAULT_CUDA_OOM") == "1":
    import torch

    from ulmfit_cli.models import heads

    def _oom(self, ids):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.10 GiB total "
                                     "capacity; 70.00 GiB already allocated)")

    heads.TextClassifier.forward = _oom


if os.environ.get("ULMFIT_FAULT_KILL_AT_STEP"):
    import signal

    from ulmfit_cli.training import loop

    _kill_at = int(os.environ["ULMFIT_FAULT_KILL_AT_STEP"])
    _real_call = loop.Trainer._call

    def _call(self, hook, *args):
        _real_call(self, hook, *args)
        if hook == "on_step_end" and self.state.global_step == _kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    loop.Trainer._call = _call
