"""return_freed_memory: a dropped corpus's pages go back to the OS (glibc)."""
from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import sys
from ulmfit_cli.sysmem import return_freed_memory

def rss_mb():
    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) / 1024

base = rss_mb()
texts = ['x' * 1000 + str(i) for i in range(300_000)]  # ~300 MB of mid-sized strings, as a corpus
keep = texts[-1]  # the last allocation stays: glibc could otherwise shrink the heap top on its own
grown = rss_mb()
del texts
if sys.argv[1] == 'trim':
    return_freed_memory()
print(base, grown, rss_mb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and glibc's malloc_trim")
def test_freed_text_memory_goes_back_to_the_os():
    def run(how):
        out = subprocess.run([sys.executable, "-c", SCRIPT, how], capture_output=True, text=True, check=True)
        return [float(v) for v in out.stdout.split()]

    base, grown, kept = run("keep")
    assert grown - base > 250 and kept - base > 200  # control: without it the pages stay with the process
    base, grown, trimmed = run("trim")
    assert trimmed - base < 0.2 * (grown - base), (base, grown, trimmed)
