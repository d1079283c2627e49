"""Round-trips for every message type; malformed messages give DecodeError."""
import dataclasses
import json

import numpy as np
import pytest

from assistant import messages as m


def _sample(cls):
    """A message of each type with every field filled (arrays where the type says so)."""
    values = {}
    for f in dataclasses.fields(cls):
        t = str(f.type)
        if "ndarray" in t:
            values[f.name] = np.arange(6 * 7, dtype=np.uint8).reshape(6, 7)
        elif t.startswith("int"):
            values[f.name] = 3
        elif t.startswith("float"):
            values[f.name] = 1.25
        elif t.startswith("bool"):
            values[f.name] = True
        elif t.startswith("list"):
            values[f.name] = ["a", 1, 0.5]
        elif t.startswith("dict"):
            values[f.name] = {"k": [1, 2], "nested": {"x": 1.5}}
        else:
            values[f.name] = "text"
    return cls(**values)


@pytest.mark.parametrize("cls", list(m.message_types().values()), ids=lambda c: c.TYPE)
def test_round_trip_every_type(cls):
    msg = _sample(cls)
    frames, header = m.encode(msg, "test:1", parent_id="p123")
    h2, back = m.decode([bytes(f) for f in frames])
    assert h2.msg_id == header.msg_id and h2.parent_id == "p123" and h2.source == "test:1"
    assert h2.proto == m.PROTOCOL_VERSION and h2.type == cls.TYPE
    for f in dataclasses.fields(cls):
        a, b = getattr(msg, f.name), getattr(back, f.name)
        if isinstance(a, np.ndarray):
            assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)
        else:
            assert a == b, f.name


def test_arrays_travel_raw_not_pickled():
    img = np.random.default_rng(0).integers(0, 255, (542, 562), dtype=np.uint8)
    frames, _ = m.encode(m.Frame(frame_id=1, media_time_s=0.0, image=img, spacing_mm=0.1,
                                 depth_mm=40.0), "t")
    assert bytes(frames[3]) == img.tobytes()  # the raw buffer, nothing else
    body = json.loads(frames[2])
    assert body["image"] == {"__array__": 0, "dtype": "|u1", "shape": [542, 562]}
    _, back = m.decode([bytes(f) for f in frames])
    assert np.array_equal(back.image, img)


def test_non_contiguous_and_float_arrays():
    a = np.arange(40, dtype=np.float32).reshape(5, 8)[:, ::2]
    frames, _ = m.encode(m.AudioChunk(seq=0, start_s=0.0, samples=a), "t")
    _, back = m.decode([bytes(f) for f in frames])
    assert np.array_equal(back.samples, a)


def _frames():
    frames, _ = m.encode(m.Say(text="hello"), "t")
    return [bytes(f) for f in frames]


@pytest.mark.parametrize("mutate,expect", [
    (lambda f: f[:2], "at least 3 frames"),
    (lambda f: [f[0], b"{not json", f[2]], "not a valid header"),
    (lambda f: [f[0], f[1].replace(b'"proto": 1', b'"proto": 99'), f[2]], "protocol version 99"),
    (lambda f: [b"zzz", f[1].replace(b'"say"', b'"zzz"'), f[2]], "unknown message type"),
    (lambda f: [f[0], f[1], b"[1, 2]"], "not an object"),
    (lambda f: [f[0], f[1], b'{"text": "x", "evil": 1}'], "unknown fields"),
    (lambda f: [f[0], f[1], b'{"priority": "alert"}'], "fields are wrong"),
    (lambda f: [f[0], f[1], b'{"text": 5}'], "field 'text' should be str, got int"),
])
def test_malformed_messages_raise_decode_error(mutate, expect):
    with pytest.raises(m.DecodeError, match=expect):
        m.decode(mutate(_frames()))


def test_bad_array_descriptor():
    frames, _ = m.encode(m.AudioChunk(seq=0, start_s=0.0, samples=np.zeros(10, np.int16)), "t")
    frames = [bytes(f) for f in frames]
    with pytest.raises(m.DecodeError, match="bad array descriptor"):
        m.decode(frames[:3])  # buffer missing
    body = json.loads(frames[2])
    body["samples"]["shape"] = [11]
    with pytest.raises(m.DecodeError, match="bad array descriptor"):
        m.decode([frames[0], frames[1], json.dumps(body).encode(), frames[3]])
    body["samples"]["dtype"] = "|O"
    with pytest.raises(m.DecodeError, match="object arrays"):
        m.decode([frames[0], frames[1], json.dumps(body).encode(), frames[3]])


def test_array_field_must_be_an_array():
    frames, _ = m.encode(m.Frame(frame_id=1, media_time_s=0.0, image=np.zeros((2, 2), np.uint8),
                                 spacing_mm=0.1, depth_mm=1.0), "t")
    body = json.loads(frames[2])
    body["image"] = [[0, 0], [0, 0]]
    with pytest.raises(m.DecodeError, match="field 'image' should be np.ndarray"):
        m.decode([frames[0], frames[1], json.dumps(body).encode()])
    body["image"] = {"__array__": 0, "dtype": "|u1", "shape": [2, 2]}
    body["frame_id"] = True
    with pytest.raises(m.DecodeError, match="field 'frame_id' should be int"):
        m.decode([frames[0], frames[1], json.dumps(body).encode(), bytes(frames[3])])


@pytest.mark.parametrize("bad", [[5], "xy", [1.0, float("nan")], [1, True], {"x": 1}])
def test_a_needle_point_that_is_not_two_finite_numbers_is_refused(bad):
    labels = np.zeros((4, 4), np.uint8)
    good = m.needle_dict(True, [1.0, 2.0], [0.1, 0.2], 30.0, 0.2, 0.9, entry_px=[0.0, 1.0])
    msg = m.SegResult(frame_id=1, media_time_s=0.0, frame_t_mono=0.0, labels=labels,
                      classes=["background"], confidence=[1.0], present=[True], needle=good)
    frames, _ = m.encode(msg, "t")
    assert m.decode([bytes(f) for f in frames])[1].needle == good
    for key in m.NEEDLE_POINTS:
        msg.needle = dict(good, **{key: bad})
        frames, _ = m.encode(msg, "t")
        with pytest.raises(m.DecodeError, match=f"'seg' message: needle {key} should be two "
                                                r"finite numbers \(x, y\)"):
            m.decode([bytes(f) for f in frames])
