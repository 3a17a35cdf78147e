"""The process's CPU settings: freed memory kept for reuse."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# Three steps of three 80 MB tensors each (after one untimed step): the page faults they cost.
FAULTS = """
import resource, sys, torch
from spacemoc.devices import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
torch.set_num_threads(1)
def step():
    a = torch.ones(20_000_000)
    b = a * 2
    c = torch.exp(b)
    return float(c.sum())
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_freed_memory_is_reused_without_page_faults():
    pages = 3 * 3 * 80_000_000 // 4096  # a fresh block faults in page by page when first touched
    assert faults("default") > pages // 2
    assert faults("reuse") < pages // 4
