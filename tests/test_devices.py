"""The process's CPU settings: freed memory kept for reuse."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

# Where a 200 MB tensor's memory comes from (glibc's mallinfo2), and what stays after it is freed.
MALLINFO = """
import ctypes, json, sys, torch
from spacemoc.devices import reuse_freed_memory
FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
          "fordblks", "keepcost")
class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
tensor = torch.ones(50_000_000)
in_use = libc.mallinfo2()
del tensor
freed = libc.mallinfo2()
print(json.dumps({"mmapped": in_use.hblkhd, "heap_after_free": freed.arena}))
"""


def mallinfo(mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", MALLINFO, mode], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_freed_memory_stays_in_the_process():
    size = 200_000_000
    default, reuse = mallinfo("default"), mallinfo("reuse")
    # glibc's default: a fresh mapping, handed back to the kernel when freed
    assert default["mmapped"] >= size and default["heap_after_free"] < size
    # kept: the block comes from the heap and stays there for the next allocation
    assert reuse["mmapped"] < size and reuse["heap_after_free"] >= size
