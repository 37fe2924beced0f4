"""Unit tests for the object store's bookkeeping (object_store/store.py): reservations, freeing,
capacity, and the choice of objects to spill. Pure: no segments."""
from __future__ import annotations

import pytest

from asyncray._private.object_store.store import ObjectStore, StoredObject, StoreFull


def _oid(n: int) -> bytes:
    return n.to_bytes(28, "big")


def test_reserve_records_the_object_unsealed():
    store = ObjectStore(1000)
    obj = store.reserve(_oid(1), "/seg-1", 100, "owner-a")
    assert isinstance(obj, StoredObject)
    assert (obj.object_id, obj.segment, obj.size, obj.owner, obj.sealed) == (_oid(1), "/seg-1", 100, "owner-a", False)
    assert store.used == 100
    assert store.objects == {_oid(1): obj}
    assert store.by_owner == {"owner-a": {_oid(1)}}


def test_seal():
    store = ObjectStore(1000)
    obj = store.reserve(_oid(1), "/seg-1", 100, "a")
    store.seal(_oid(1))
    assert obj.sealed
    store.seal(_oid(2))  # unknown id: ignored
    assert list(store.objects) == [_oid(1)]


def test_reserve_is_idempotent():
    store = ObjectStore(1000)
    first = store.reserve(_oid(1), "/seg-1", 400, "a")
    store.seal(_oid(1))
    again = store.reserve(_oid(1), "/seg-1", 400, "a")  # a retried task writes its return again
    assert again is first
    assert again.sealed
    assert store.used == 400
    assert len(store.objects) == 1


def test_reserve_existing_does_not_count_against_capacity():
    store = ObjectStore(500)
    store.reserve(_oid(1), "/seg-1", 400, "a")
    # The same id again must not raise StoreFull although 400 + 400 > 500.
    assert store.reserve(_oid(1), "/seg-1", 400, "a").size == 400
    assert store.used == 400


def test_capacity_exactly_full_is_allowed():
    store = ObjectStore(1000)
    store.reserve(_oid(1), "/s1", 600, "a")
    store.reserve(_oid(2), "/s2", 400, "a")
    assert store.used == store.capacity == 1000


def test_store_full_names_sizes():
    store = ObjectStore(1_000_000)
    store.reserve(_oid(1), "/s1", 600_000, "a")
    store.reserve(_oid(2), "/s2", 300_000, "b")
    with pytest.raises(StoreFull) as info:
        store.reserve(_oid(3), "/s3", 200_000, "a")
    err = info.value
    assert (err.requested, err.used, err.capacity, err.objects) == (200_000, 900_000, 1_000_000, 2)
    text = str(err)
    assert "200,000" in text and "900,000" in text and "1,000,000" in text
    assert "2 live object" in text
    # The failed reservation left nothing behind.
    assert store.used == 900_000
    assert _oid(3) not in store.objects
    assert store.by_owner == {"a": {_oid(1)}, "b": {_oid(2)}}


def test_object_bigger_than_capacity():
    store = ObjectStore(100)
    with pytest.raises(StoreFull, match="101 bytes") as info:
        store.reserve(_oid(1), "/s1", 101, "a")
    assert "larger than the whole store" in str(info.value)
    assert store.used == 0 and not store.objects and not store.by_owner


def test_store_full_names_unsealed_bytes():
    store = ObjectStore(1000)
    store.reserve(_oid(1), "/s1", 300, "a")  # still being written
    store.reserve(_oid(2), "/s2", 500, "a")
    store.seal(_oid(2))
    with pytest.raises(StoreFull) as info:
        store.reserve(_oid(3), "/s3", 400, "a")
    assert "300 bytes of it belong to objects still being written" in str(info.value)
    assert "larger than the whole store" not in str(info.value)


def test_free_returns_room():
    store = ObjectStore(1000)
    store.reserve(_oid(1), "/s1", 700, "a")
    with pytest.raises(StoreFull):
        store.reserve(_oid(2), "/s2", 700, "a")
    freed = store.free(_oid(1))
    assert freed is not None and freed.segment == "/s1"
    assert store.used == 0
    assert store.by_owner == {}
    assert store.reserve(_oid(2), "/s2", 700, "a").size == 700


def test_free_unknown_and_twice():
    store = ObjectStore(1000)
    assert store.free(_oid(9)) is None
    store.reserve(_oid(1), "/s1", 10, "a")
    assert store.free(_oid(1)) is not None
    assert store.free(_oid(1)) is None
    assert store.used == 0


def test_free_keeps_other_objects_of_the_owner():
    store = ObjectStore(1000)
    store.reserve(_oid(1), "/s1", 10, "a")
    store.reserve(_oid(2), "/s2", 20, "a")
    store.free(_oid(1))
    assert store.by_owner == {"a": {_oid(2)}}
    assert store.used == 20


def test_free_owner():
    store = ObjectStore(1000)
    store.reserve(_oid(1), "/s1", 100, "a")
    store.reserve(_oid(2), "/s2", 200, "b")
    store.reserve(_oid(3), "/s3", 300, "a")
    freed = store.free_owner("a")
    assert sorted(o.segment for o in freed) == ["/s1", "/s3"]
    assert store.used == 200
    assert list(store.objects) == [_oid(2)]
    assert store.by_owner == {"b": {_oid(2)}}
    assert store.free_owner("a") == []
    assert store.free_owner("nobody") == []


def test_free_owner_then_reuse_capacity():
    store = ObjectStore(500)
    for i in range(5):
        store.reserve(_oid(i), f"/s{i}", 100, "a")
    with pytest.raises(StoreFull):
        store.reserve(_oid(99), "/s99", 1, "b")
    assert len(store.free_owner("a")) == 5
    assert store.used == 0
    store.reserve(_oid(99), "/s99", 500, "b")
    assert store.used == 500


# ============================================================================ spilling
def _filled(capacity: int, sizes: list[int], sealed: bool = True) -> ObjectStore:
    store = ObjectStore(capacity)
    for i, size in enumerate(sizes):
        store.reserve(_oid(i), f"/s{i}", size, "a")
        if sealed:
            store.seal(_oid(i))
    return store


def test_to_spill_nothing_when_it_fits():
    store = _filled(1000, [300, 300])
    assert store.to_spill(400) == []
    assert store.to_spill(0) == []


def test_to_spill_oldest_first_until_enough():
    store = _filled(1000, [300, 300, 300])
    # 900 used; 250 more needs 150 freed: the oldest object alone is enough.
    assert [o.object_id for o in store.to_spill(250)] == [_oid(0)]
    # 700 more needs 600 freed: the two oldest.
    assert [o.object_id for o in store.to_spill(700)] == [_oid(0), _oid(1)]
    # to_spill only chooses: nothing changed yet.
    assert store.used == 900 and all(o.spilled is None for o in store.objects.values())


def test_to_spill_skips_unsealed_spilled_and_kept():
    store = _filled(1000, [200, 200, 200, 200])
    store.objects[_oid(0)].sealed = False  # still being written
    store.mark_spilled(store.objects[_oid(1)], "/spill/1")
    assert store.used == 600
    # Needs 600 - 1000 + 700 = 300 freed: skips 0 (unsealed), 1 (spilled), 2 (kept) -> 3 alone is short.
    assert store.to_spill(700, keep=_oid(2)) == []
    assert [o.object_id for o in store.to_spill(700)] == [_oid(2), _oid(3)]


def test_to_spill_returns_nothing_when_it_cannot_make_room():
    store = _filled(1000, [400, 400])
    assert store.to_spill(1500) == []  # larger than the whole store
    unsealed = _filled(1000, [400, 400], sealed=False)
    assert unsealed.to_spill(500) == []


def test_mark_spilled_and_restored_account_used_bytes():
    store = _filled(1000, [400, 400])
    obj = store.objects[_oid(0)]
    store.mark_spilled(obj, "/spill/0")
    assert obj.spilled == "/spill/0"
    assert store.used == 400
    assert store.spilled_bytes() == 400
    # Room was made: a new object fits now.
    store.reserve(_oid(5), "/s5", 600, "a")
    store.seal(_oid(5))
    assert store.used == 1000
    store.free(_oid(5))
    store.mark_restored(obj)
    assert obj.spilled is None
    assert store.used == 800 and store.spilled_bytes() == 0
    # Restored objects are last in line for the next spill.
    assert list(store.objects) == [_oid(1), _oid(0)]
    assert [o.object_id for o in store.to_spill(600)] == [_oid(1)]


def test_free_of_a_spilled_object_does_not_count_twice():
    store = _filled(1000, [400, 400])
    store.mark_spilled(store.objects[_oid(0)], "/spill/0")
    freed = store.free(_oid(0))
    assert freed is not None and freed.spilled == "/spill/0"  # the caller removes the file
    assert store.used == 400
    assert store.spilled_bytes() == 0
    assert store.by_owner == {"a": {_oid(1)}}


def test_free_owner_includes_spilled_objects():
    store = _filled(1000, [400, 400])
    store.mark_spilled(store.objects[_oid(0)], "/spill/0")
    freed = store.free_owner("a")
    assert sorted(o.object_id for o in freed) == [_oid(0), _oid(1)]
    assert store.used == 0 and store.objects == {}
