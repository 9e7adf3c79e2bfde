"""The shared file lock and disk-error mapping (used by `ulmfit download`, the sweep table and the CLI)."""
from __future__ import annotations

import errno
import threading
import time

import pytest

from ulmfit_cli.data import download
from ulmfit_cli.errors import UserError, as_user_error, disk_error
from ulmfit_cli.fileutil import file_lock

fcntl = pytest.importorskip("fcntl")


def test_a_held_lock_refuses_a_second_non_blocking_holder_and_is_removed_after(tmp_path):
    path = tmp_path / "x.lock"
    with download._lock(path, "imdb"):
        with pytest.raises(UserError, match="Another `ulmfit download imdb` is already writing"):
            with download._lock(path, "imdb"):
                pass
        assert path.exists()
    assert not path.exists()  # remove=True: no lock file left behind
    with download._lock(path, "imdb"):  # free again
        pass


def test_a_waiting_lock_waits_for_the_holder(tmp_path):
    path, order = tmp_path / ".sweep.csv.lock", []

    def second():
        with file_lock(path):
            order.append("second")

    with file_lock(path):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first")
    t.join(5)
    assert order == ["first", "second"] and path.exists()  # the sweep's lock file stays


@pytest.mark.parametrize("code, needle", [(errno.ENOSPC, "No space left on the device while writing /d/f"),
                                          (errno.EDQUOT, "No space left"), (errno.EROFS, "Cannot write /d/f")])
def test_disk_errors_become_user_errors_in_download_and_training(code, needle):
    e = OSError(code, "boom", "/d/f")
    for err in (download._disk_error(e, "/d"), as_user_error(e)):
        assert isinstance(err, UserError) and needle in str(err)
    assert "--dest" in str(download._disk_error(e, "/d")) and "outputs_root=" in str(as_user_error(e))


def test_other_os_errors_are_left_alone():
    e = OSError(errno.EIO, "I/O error")
    assert disk_error(e, "x", full_fix="", access_fix="") is e and as_user_error(e) is e
