"""glibc's malloc kept from holding on to the large tables of dictionaries that churn.

glibc serves a block above its mmap threshold (128 KiB at start) with a mapping of its own
and unmaps it when freed, but each time it unmaps one it raises the threshold to that
block's size (up to 32 MiB). Ingest's rate limits hold one dictionary of every reader seen
in the last window, and at a steady crowd of new readers Python rebuilds its table (10 MB
at 120,000 keys) every minute or two. After the first rebuild the threshold is above the
table, so every later table comes from the heap, and the heap keeps pages it cannot give
back around whatever small objects were allocated after them. Measured with the soak
(`make soak`) and with the churn of 120,000 keys alone (`python -m bench.window_memory`):
resident memory stepped up by 4 and then 8 MB while the keys held stayed flat. With the
threshold set once, glibc stops moving it: tables are mapped and unmapped, and memory
stays flat. Ingest pins it in each worker; the reader and the aggregator held their
memory in the same soak without it. Other allocators (musl, jemalloc) do not move a
threshold; there this is a no-op.
"""

from __future__ import annotations

import ctypes
import os
from typing import Final

# mallopt's parameter number for the mmap threshold (malloc.h).
M_MMAP_THRESHOLD: Final = -3
# glibc's own starting value: blocks of this size or more are mapped, and given back.
MMAP_THRESHOLD_BYTES: Final = 128 * 1024


def pin_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at its starting value; True when glibc took it."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
    except (ValueError, OSError):  # not glibc: the name or its value is unknown
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
