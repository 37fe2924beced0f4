"""MappingCache: shared mappings, kept for reuse, dropped once their segment is unlinked."""
from __future__ import annotations

import gc
import os

import numpy as np
import pytest

from asyncray._private.object_store import segments


@pytest.fixture
def segment():
    name = f"/asyncray-{os.getpid():x}_unit-{os.urandom(4).hex()}"
    data = np.arange(1000, dtype=np.uint8)
    segments.write(name, [data], data.nbytes)
    yield name
    segments.unlink(name)


def test_views_share_one_read_only_mapping(segment):
    cache = segments.MappingCache(keep_bytes=0)
    a, b = cache.base(segment), cache.base(segment)
    assert a is b and not a.flags.writeable
    assert a[999] == 999 % 256


def test_recent_mapping_kept_until_segment_unlinked(segment):
    cache = segments.MappingCache(keep_bytes=1 << 20)
    first = cache.base(segment)
    del first
    gc.collect()
    assert cache.live_mappings() == 1  # kept for the next reader
    assert cache.sweep()
    segments.unlink(segment)
    assert not cache.sweep()
    gc.collect()
    assert cache.live_mappings() == 0


def test_clear_with_kept_mappings_does_not_deadlock(segment):
    cache = segments.MappingCache(keep_bytes=1 << 20)
    cache.base(segment)
    cache.clear()  # the finalizer runs while clear() holds the cache's lock
    gc.collect()
    assert cache.live_mappings() == 0


def test_budget_evicts_oldest(segment):
    cache = segments.MappingCache(keep_bytes=1500)
    other = segment + "-b"
    segments.write(other, [b"x" * 1000], 1000)
    try:
        cache.base(segment)
        cache.base(other)  # 2000 bytes > 1500: the first is no longer kept
        gc.collect()
        assert cache.live_mappings() == 1
    finally:
        segments.unlink(other)
