"""Unit tests for the wire codec (transport/codec.py) and value serialisation (serialization.py)."""
from __future__ import annotations

import mmap
import pickle
import struct
import threading
import traceback
from typing import NamedTuple

import numpy as np
import pytest

from asyncray._private import protocol as p
from asyncray._private import serialization
from asyncray._private.serialization import (
    ALIGN,
    Serialized,
    deserialize,
    deserialize_exception,
    dumps_exception,
    format_user_traceback,
    note_ref,
    serialize,
)
from asyncray._private.transport import codec
from asyncray.exceptions import RaySystemError

THROWAWAY_TAG = 1000 + 737


@pytest.fixture
def clean_registry():
    """Restore the codec's tag registry after a test that registers throwaway messages."""
    by_tag, tag_of = dict(codec._BY_TAG), dict(codec._TAG_OF)
    yield
    codec._BY_TAG.clear()
    codec._BY_TAG.update(by_tag)
    codec._TAG_OF.clear()
    codec._TAG_OF.update(tag_of)


# ============================================================================ codec
def test_protocol_messages_round_trip_as_one_batch():
    msgs = [
        p.RegisterNode(1, b"\x01" * 28, "tcp://127.0.0.1:5555", {"CPU": 2.0, "object_store_memory": 1e9}, 4242),
        p.RequestLease(7, {"CPU": 1.0}, 3, None),
        p.RequestLease(8, {"CPU": 0.5, "GPU": 1.0}, 3, {"env_vars": {"A": "1"}}),
        p.LeaseGranted(7, 11, b"w" * 28, "ipc:///tmp/x.sock", [0]),
        p.CreateObject(9, b"o" * 28, 123_456_789_012, "ipc:///tmp/d.sock"),
        p.CreateObjectReply(9, None, b"\x80\x05pickled"),
        p.SealObject(b"o" * 28),
        p.FreeObjects([b"a" * 28, b"b" * 28]),
        p.PushTask(b"t" * 24, "mod.f", b"f" * 20, None, b"args", [[p.INLINE, b"\x00x"]], 2, 1,
                   "ipc:///o", "ipc:///d", 1.0, 0, []),
        p.TaskReply(b"t" * 24, [[p.INLINE, b"\x00v"], [p.SHM, "/asyncray-s-ab", 4096, b""]], False, False, [[], []]),
        p.ObjectReply(3, [p.ERROR, b"exc"]),
        p.ReturnLease(11, True),
        p.ResourcesReply(5, {"CPU": 2.0}, {"CPU": 1.5}),
    ]
    frame = codec.encode_batch(msgs)
    assert isinstance(frame, bytes)
    out = codec.decode_batch(frame)
    assert [type(m) for m in out] == [type(m) for m in msgs]
    assert out == msgs
    # A read-only view of a frame (as zmq hands out) decodes the same.
    assert codec.decode_batch(memoryview(frame)) == msgs


def test_round_trip_preserves_field_values_and_types():
    msg = p.TaskReply(b"\x00\xff" * 12, [[p.INLINE, b"\x00\x01\x02"]], True, True, [[[b"o" * 28, "ipc:///x"]]])
    (out,) = codec.decode_batch(codec.encode_batch([msg]))
    assert isinstance(out, p.TaskReply)
    assert out.task_id == msg.task_id and isinstance(out.task_id, bytes)
    assert out.returns == [[p.INLINE, b"\x00\x01\x02"]]
    assert out.app_error is True and out.worker_exiting is True
    assert out.nested == [[[b"o" * 28, "ipc:///x"]]]


def test_bytes_keys_and_big_ints():
    msg = p.ResourcesReply(2**40, {"a": 2**62, "b": -1}, {})
    assert codec.decode_batch(codec.encode_batch([msg])) == [msg]


def test_empty_batch():
    assert codec.decode_batch(codec.encode_batch([])) == []


def test_wire_format_is_tag_then_fields():
    import msgpack

    frame = codec.encode_batch([p.SealObject(b"x" * 28), p.GetResources(4)])
    assert msgpack.unpackb(frame) == [[codec.tag_of(p.SealObject), b"x" * 28], [codec.tag_of(p.GetResources), 4]]


def test_every_protocol_tag_is_unique_and_consistent():
    assert len(codec._BY_TAG) == len(codec._TAG_OF)
    for tag, cls in codec._BY_TAG.items():
        assert codec.tag_of(cls) == tag
    assert codec.tag_of(p.RegisterNode) == 1


def test_throwaway_message_round_trip(clean_registry):
    @codec.message(THROWAWAY_TAG)
    class Probe(NamedTuple):
        a: int
        b: str
        c: bytes
        d: list
        e: dict
        f: float | None

    assert codec.tag_of(Probe) == THROWAWAY_TAG
    msgs = [Probe(1, "é", b"\x00", [1, [2, "x"]], {"k": [b"v"]}, None), Probe(-5, "", b"", [], {}, 2.5)]
    assert codec.decode_batch(codec.encode_batch(msgs)) == msgs


def test_duplicate_tag_rejected(clean_registry):
    @codec.message(THROWAWAY_TAG)
    class First(NamedTuple):
        x: int

    with pytest.raises(RuntimeError, match=rf"message tag {THROWAWAY_TAG} used by First and Second"):
        @codec.message(THROWAWAY_TAG)
        class Second(NamedTuple):
            x: int

    # The first registration stands.
    assert codec._BY_TAG[THROWAWAY_TAG] is First
    assert codec.decode_batch(codec.encode_batch([First(3)])) == [First(3)]


def test_duplicate_of_a_protocol_tag_rejected(clean_registry):
    with pytest.raises(RuntimeError, match="message tag 1 used by RegisterNode"):
        @codec.message(1)
        class Impostor(NamedTuple):
            x: int

    assert codec._BY_TAG[1] is p.RegisterNode


def test_registry_cleaned_after_throwaway_tests():
    assert THROWAWAY_TAG not in codec._BY_TAG


# ============================================================================ serialization: inline
@pytest.mark.parametrize("value", [
    None, True, 0, -(2**70), 3.5, float("inf"), "text", "é" * 10, b"\x00\xff", bytearray(b"ab"),
    [1, [2, 3]], (1, "a"), {"a": {"b": [1]}}, {1, 2}, frozenset({3}), complex(1, 2), range(5),
])
def test_small_values_inline_format(value):
    ser = serialize(value)
    assert isinstance(ser, Serialized)
    assert ser.buffers == []
    assert ser.refs == []
    data = ser.to_bytes()
    assert data[0] == 0
    assert data[1:] == ser.meta
    assert ser.size == len(data) == 1 + len(ser.meta)
    assert ser.chunks() == [b"\x00", ser.meta]
    assert deserialize(data) == value
    assert deserialize(memoryview(data)) == value


def test_inline_lambda_and_local_class():
    class Local:
        def __init__(self, v):
            self.v = v

    fn = (lambda x: x + 1)
    out_fn, out_obj = deserialize(serialize([fn, Local(4)]).to_bytes())
    assert out_fn(1) == 2
    assert out_obj.v == 4


# ============================================================================ serialization: buffers
def _parse_header(data) -> tuple[int, int, list[tuple[int, int]]]:
    kind, nbuf, meta_len = struct.unpack_from("<BIQ", data, 0)
    assert kind == 1
    entries = [struct.unpack_from("<QQ", data, struct.calcsize("<BIQ") + 16 * i) for i in range(nbuf)]
    return nbuf, meta_len, entries


def test_numpy_array_goes_out_of_band():
    arr = np.arange(100_000, dtype=np.float64)
    ser = serialize(arr)
    assert len(ser.buffers) == 1
    assert ser.buffers[0].nbytes == arr.nbytes
    assert len(ser.meta) < 1000  # the data is not in the pickle stream
    data = ser.to_bytes()
    assert data[0] == 1
    assert len(data) == ser.size
    assert ser.size >= arr.nbytes
    assert sum(memoryview(c).nbytes for c in ser.chunks()) == ser.size


def test_deserialize_gives_read_only_equal_arrays():
    arr = np.random.default_rng(0).standard_normal((300, 200))
    out = deserialize(serialize(arr).to_bytes())
    assert isinstance(out, np.ndarray)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    assert not out.flags.writeable
    with pytest.raises(ValueError):
        out[0, 0] = 1.0


def test_small_arrays_read_only_too():
    out = deserialize(serialize({"a": np.arange(3), "b": [np.zeros(2, np.int8)]}).to_bytes())
    np.testing.assert_array_equal(out["a"], np.arange(3))
    assert not out["a"].flags.writeable
    assert not out["b"][0].flags.writeable


def test_deserialize_is_zero_copy_over_the_source_buffer():
    arr = np.arange(1_000_000, dtype=np.int64)
    source = bytearray(serialize(arr).to_bytes())
    view = memoryview(source)
    out = deserialize(view)
    backing = np.frombuffer(source, dtype=np.uint8)
    assert np.shares_memory(out, backing)
    np.testing.assert_array_equal(out, arr)
    assert not out.flags.writeable
    # Proof by mutation: writing the source is visible through the (read-only) result.
    nbuf, meta_len, [(off, ln)] = _parse_header(source)
    assert ln == arr.nbytes
    source[off: off + 8] = (12345).to_bytes(8, "little")
    assert out[0] == 12345


def test_fortran_arrays_go_out_of_band_and_read_only():
    base = np.arange(10_000, dtype=np.float32).reshape(100, 100)
    for arr in (np.asfortranarray(base), base.T):
        ser = serialize(arr)
        assert len(ser.buffers) == 1
        out = deserialize(ser.to_bytes())
        np.testing.assert_array_equal(out, arr)
        assert out.flags.f_contiguous
        assert not out.flags.writeable


def test_non_contiguous_array_round_trips():
    # numpy pickles a strided view in band (a copy), as it does under Ray; only its values matter.
    arr = np.arange(10_000, dtype=np.float32).reshape(100, 100)[::2, ::3]
    out = deserialize(serialize(arr).to_bytes())
    np.testing.assert_array_equal(out, arr)


def test_object_dtype_array_round_trips():
    arr = np.array([1, "a", None], dtype=object)
    out = deserialize(serialize(arr).to_bytes())
    assert list(out) == [1, "a", None]


def test_multiple_buffers_are_64_byte_aligned():
    # Odd sizes so that unaligned packing would show.
    arrays = [np.arange(n, dtype=np.uint8) for n in (1, 63, 65, 1000, 7)] + [np.ones(13, np.float64)]
    value = {"arrays": arrays, "tail": "x" * 37}
    ser = serialize(value)
    assert len(ser.buffers) == len(arrays)
    data = ser.to_bytes()
    assert len(data) == ser.size
    nbuf, meta_len, entries = _parse_header(data)
    assert nbuf == len(arrays)
    prev_end = struct.calcsize("<BIQ") + 16 * nbuf + meta_len
    for (off, ln), arr in zip(entries, arrays):
        assert off % ALIGN == 0
        assert off >= prev_end
        assert ln == arr.nbytes
        assert data[off: off + ln] == arr.tobytes()
        prev_end = off + ln
    # In a page-aligned source (as a segment mapping is), every array starts 64-byte aligned.
    mm = mmap.mmap(-1, len(data))
    mm[:] = data
    out = deserialize(memoryview(mm))
    for got, want in zip(out["arrays"], arrays):
        np.testing.assert_array_equal(got, want)
        assert not got.flags.writeable
        assert got.ctypes.data % ALIGN == 0
    assert out["tail"] == "x" * 37
    del out, got


def test_chunks_join_equals_to_bytes():
    ser = serialize([np.arange(10), b"x", np.zeros(7, np.uint8)])
    assert b"".join(bytes(memoryview(c)) for c in ser.chunks()) == ser.to_bytes()


def test_serialize_does_not_copy_array_data():
    arr = np.arange(1000, dtype=np.float64)
    ser = serialize(arr)
    assert np.shares_memory(np.frombuffer(ser.buffers[0], dtype=np.float64), arr)


# ============================================================================ serialization: errors and refs
def test_unpicklable_raises_type_error_naming_it():
    lock = threading.Lock()
    with pytest.raises(TypeError, match=r"Could not serialize .*lock") as info:
        serialize(lock)
    assert "lock" in str(info.value)
    assert info.value.__cause__ is not None


def test_unpicklable_nested_raises_type_error():
    class Holder:
        def __init__(self):
            self.lock = threading.Lock()

        def __repr__(self):
            return "<Holder with a lock>"

    with pytest.raises(TypeError, match=r"Could not serialize \[<Holder with a lock>\] of type list"):
        serialize([Holder()])


def test_unpicklable_with_huge_or_broken_repr():
    class BadRepr:
        def __reduce__(self):
            raise RuntimeError("nope")

        def __repr__(self):
            raise ValueError("repr broken")

    with pytest.raises(TypeError, match=r"of type .*BadRepr.*RuntimeError: nope"):
        serialize(BadRepr())

    class LongRepr:
        def __reduce__(self):
            raise RuntimeError("nope")

        def __repr__(self):
            return "L" * 1000

    with pytest.raises(TypeError) as info:
        serialize(LongRepr())
    assert "L" * 117 + "..." in str(info.value)
    assert "L" * 200 not in str(info.value)


class RefLike:
    """Behaves like ObjectRef when pickled: reports itself through note_ref."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self):
        note_ref(self)
        return RefLike, (self.name,)


def test_note_ref_collects_nested_refs():
    a, b = RefLike("a"), RefLike("b")
    ser = serialize({"x": [a, (b, 1)], "y": 2})
    assert {r.name for r in ser.refs} == {"a", "b"}
    assert all(isinstance(r, RefLike) for r in ser.refs)
    assert any(r is a for r in ser.refs) and any(r is b for r in ser.refs)
    out = deserialize(ser.to_bytes())
    assert out["x"][0].name == "a" and out["x"][1][0].name == "b"


def test_note_ref_with_buffers_and_top_level():
    ser = serialize([RefLike("r"), np.arange(5)])
    assert [r.name for r in ser.refs] == ["r"]
    assert len(ser.buffers) == 1
    assert [r.name for r in serialize(RefLike("top")).refs] == ["top"]


def test_refs_are_per_call_and_nesting_restores_the_outer_list():
    class Inner:
        """Serialises another value while being pickled (as a nested serialize call would)."""

        def __reduce__(self):
            inner = serialize(RefLike("inner"))
            assert [r.name for r in inner.refs] == ["inner"]
            note_ref(RefLike("outer-after"))
            return int, (0,)

    ser = serialize([RefLike("outer"), Inner()])
    assert sorted(r.name for r in ser.refs) == ["outer", "outer-after"]
    assert serialize(5).refs == []


def test_note_ref_outside_serialize_is_harmless():
    note_ref(RefLike("nobody"))  # no collector: nothing happens
    pickle.dumps(RefLike("plain"))
    assert serialize([1]).refs == []


def test_refs_not_leaked_after_failed_serialize():
    with pytest.raises(TypeError):
        serialize([RefLike("x"), threading.Lock()])
    assert serialize([1]).refs == []
    note_ref(RefLike("after"))  # no collector left installed
    assert getattr(serialization._local, "refs", None) is None


# ============================================================================ exceptions
def test_dumps_exception_round_trip():
    try:
        raise KeyError("missing")
    except KeyError as e:
        data = dumps_exception(e)
    out = deserialize_exception(data)
    assert type(out) is KeyError and out.args == ("missing",)


class NeedsTwoArgs(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")  # args holds one item: unpickling calls NeedsTwoArgs(one) and fails


class UnpicklableState(Exception):
    def __init__(self, msg):
        super().__init__(msg)
        self.lock = threading.Lock()


def test_dumps_exception_falls_back_when_round_trip_fails():
    err = NeedsTwoArgs("x", "y")
    with pytest.raises(TypeError):
        pickle.loads(pickle.dumps(err))  # precondition: the round trip really fails
    out = deserialize_exception(dumps_exception(err))
    assert isinstance(out, RaySystemError)
    assert "NeedsTwoArgs" in str(out)
    assert "x/y" in str(out)


def test_dumps_exception_falls_back_when_pickling_fails():
    out = deserialize_exception(dumps_exception(UnpicklableState("with a lock")))
    assert isinstance(out, RaySystemError)
    assert "UnpicklableState: with a lock" in str(out)


def _raise_through_fake_runtime_frame(filename: str):
    src = "def runtime_call(fn):\n    return fn()\n"
    ns: dict = {}
    exec(compile(src, filename, "exec"), ns)

    def user_code():
        raise ValueError("user boom")

    try:
        ns["runtime_call"](user_code)
    except ValueError as e:
        return e
    raise AssertionError("not raised")


def test_format_user_traceback_drops_runtime_frames():
    exc = _raise_through_fake_runtime_frame("/opt/site/asyncray/_private/worker/executor_fake.py")
    full = "".join(traceback.format_exception(exc))
    assert "executor_fake.py" in full  # precondition: the frame is there
    text = format_user_traceback(exc)
    assert text.startswith("Traceback (most recent call last):\n")
    assert "executor_fake.py" not in text
    assert "asyncray/_private" not in text
    assert "user_code" in text
    assert __file__ in text
    assert text.rstrip().endswith("ValueError: user boom")


def test_format_user_traceback_keeps_other_frames():
    exc = _raise_through_fake_runtime_frame("/opt/site/asyncray/public_helper.py")
    text = format_user_traceback(exc)
    assert "public_helper.py" in text
    assert "user_code" in text


def test_format_user_traceback_without_traceback():
    text = format_user_traceback(RuntimeError("never raised"))
    assert text == "Traceback (most recent call last):\nRuntimeError: never raised\n"
