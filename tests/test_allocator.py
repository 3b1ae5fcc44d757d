"""`tune_allocator`: large freed buffers stay in the heap instead of going back to the kernel."""

import os
import subprocess
import sys

import pytest

from latentfit.allocator import _glibc

pytestmark = [pytest.mark.skipif(_glibc() is None, reason="glibc malloc only"), pytest.mark.slow]  # subprocesses

PROBE = """
import ctypes, sys, torch, latentfit

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2

def mmapped_while_holding(megabytes):
    buffer = torch.ones(megabytes << 20, dtype=torch.uint8)  # what a refinement step allocates, and frees
    return libc.mallinfo2().hblkhd >> 20

before = mmapped_while_holding(64)
tuned = latentfit.tune_allocator()
print(before, mmapped_while_holding(64), tuned, latentfit.tune_allocator())
"""


def _probe(env=None):
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True).stdout
    before, after, tuned, again = out.split()
    return int(before), int(after), tuned == "True", again == "True"


def test_after_tuning_a_large_buffer_comes_from_the_heap_not_a_fresh_mapping():
    before, after, tuned, again = _probe()
    assert before >= 64  # glibc's default: a 64 MiB block is its own mmap, unmapped again on free
    assert tuned and again
    assert after < 64


@pytest.mark.parametrize("setting", [{"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}, {"LATENTFIT_TUNE_MALLOC": "0"}])
def test_a_users_own_malloc_setting_or_opting_out_wins(setting):
    before, after, tuned, _ = _probe(os.environ | setting)
    assert not tuned and before >= 64 and after >= 64
