"""`fastai-serve serve` caps glibc's malloc arenas: checked in a fresh interpreter, where threads that
allocate would otherwise each get an arena of their own."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# Eight threads each allocate, then the process reports its heaps through glibc's malloc_info(3).
SCRIPT = """
import ctypes, os, sys, tempfile, threading
from service.startup import cap_malloc_arenas
capped = cap_malloc_arenas(int(sys.argv[1]))
barrier = threading.Barrier(8)
def work():
    barrier.wait()
    keep = [bytearray(4096) for _ in range(200)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL("libc.so.6")
libc.fdopen.restype = ctypes.c_void_p
with tempfile.TemporaryFile() as out:
    fp = libc.fdopen(os.dup(out.fileno()), b"w")
    libc.malloc_info(0, ctypes.c_void_p(fp))
    libc.fclose(ctypes.c_void_p(fp))
    out.seek(0)
    heaps = out.read().count(b"<heap nr=")
print(capped, os.environ.get("MALLOC_ARENA_MAX"), heaps)
"""

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)


def _run(arenas: int) -> list[str]:
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(arenas)], capture_output=True, text=True, check=True, env=env
    )
    return done.stdout.split()


def test_capped_threads_share_two_arenas() -> None:
    capped, env, heaps = _run(2)
    assert (capped, env) == ("True", "2")
    assert int(heaps) <= 2


def test_zero_leaves_glibc_alone() -> None:
    capped, env, heaps = _run(0)
    assert (capped, env) == ("False", "None")
    assert int(heaps) > 2  # what the cap prevents: an arena for each allocating thread
