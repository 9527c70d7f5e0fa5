"""device.allocator: freed frame-sized buffers are reused, not faulted in afresh (glibc only)."""
import subprocess
import sys

import pytest

from edgedet.device.allocator import _mallopt

FAULTS_OF_A_REALLOCATION = """
import resource, sys
import numpy as np
from edgedet.device.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory() and keep_freed_memory()  # once per process; asking again is a no-op
np.ones(24 << 20, np.uint8)  # allocated, written and freed: 24 MiB, as a few frames' buffers
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(24 << 20, np.uint8)  # the same size again (12 faults even with 2 MiB huge pages)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def reallocation_faults(mode: str) -> int:
    run = subprocess.run([sys.executable, "-c", FAULTS_OF_A_REALLOCATION, mode], capture_output=True, text=True,
                         check=True)
    return int(run.stdout.split()[-1])


@pytest.mark.skipif(_mallopt() is None, reason="the C library is not glibc")
def test_freed_buffers_are_reused_instead_of_faulted_in():
    fresh, reused = reallocation_faults("default"), reallocation_faults("keep")
    assert fresh > 0 and reused * 4 < fresh  # glibc by default: fresh memory, faulted in (4 KiB or huge pages)
