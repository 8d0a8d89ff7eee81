"""Model-update codec: bit-exact round trip; damaged, out-of-order and foreign deltas refused."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from adasr.stream.adapt import AdaptConfig, PatchSampler, SparseAdapter
from adasr.stream.codec import DeltaError, ModelState, encode_full, model_vector, read_record
from adasr.stream.encoder import EncodeSettings, build_model_stream, downsample


def _frames(n=6, h=32, w=40, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 4, w // 4, 3)).astype(np.float32)
    hr = []
    for i in range(n):  # smooth moving content: something an SR model can learn
        img = np.kron(np.roll(base, i, axis=1), np.ones((4, 4, 1))) + rng.normal(0, 4, (h, w, 3))
        hr.append(np.clip(img, 0, 255).astype(np.uint8))
    hr = np.stack(hr)
    return downsample(hr, 2), hr


def _stream(strategy="gradient", dtype="float16", model="generic", seed=0, steps=3):
    lr, hr = _frames(seed=seed)
    settings = EncodeSettings(tau=0.08, model=model, delta_dtype=dtype, device="cpu",
                              adapt=AdaptConfig(strategy=strategy, eta=0.05, steps=steps, batch=2, patch=8, seed=seed))
    return build_model_stream(lr, hr, Fraction(25), settings)


@pytest.fixture(scope="module")
def stream():
    return _stream()


def _decoder(ms):
    return ModelState.from_full(ms.init)


def test_round_trip_is_bit_exact(stream):
    assert len(stream.deltas) == 3  # 6 frames, 2 per segment
    dec = _decoder(stream)
    for record in stream.deltas:
        dec.apply(record)
    assert torch.equal(dec.vector, stream.state.vector)
    enc_sd, dec_sd = stream.state.model.state_dict(), dec.model.state_dict()
    assert all(torch.equal(enc_sd[k], dec_sd[k]) for k in enc_sd)
    assert torch.equal(model_vector(dec.model), model_vector(stream.state.model))
    assert dec.next_segment == 3
    # the stream really changed the model, and only a fraction eta per segment
    first = read_record(stream.init)[1][1]
    assert not torch.equal(first, dec.vector)
    n = first.numel()
    for record in stream.deltas:
        _, delta = read_record(record)
        assert 0 < delta.indices.numel() <= round(0.05 * n)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "int8"])
@pytest.mark.parametrize("strategy", ["ams", "random", "first_last"])
def test_round_trip_other_values_and_strategies(dtype, strategy):
    ms = _stream(strategy, dtype, steps=2)
    dec = _decoder(ms)
    for record in ms.deltas:
        dec.apply(record)
    assert torch.equal(dec.vector, ms.state.vector)


@pytest.mark.slow
def test_srvc_model_round_trip():
    ms = _stream(model="srvc", steps=2)
    dec = _decoder(ms)
    for record in ms.deltas:
        dec.apply(record)
    assert torch.equal(dec.vector, ms.state.vector)
    x = torch.rand(1, 3, 12, 17)
    assert dec.model(x).shape == (1, 3, 24, 34)


def _unchanged(dec, vec, h, seg):
    assert torch.equal(dec.vector, vec) and dec.hash == h and dec.next_segment == seg
    assert torch.equal(model_vector(dec.model), vec)


def test_damaged_delta_refused_and_model_kept(stream):
    dec = _decoder(stream)
    dec.apply(stream.deltas[0])
    vec, h = dec.vector.clone(), dec.hash
    good = stream.deltas[1]
    for pos in (5, 60, len(good) // 2, len(good) - 3):  # header, hashes, payload, checksum
        bad = bytearray(good)
        bad[pos] ^= 0x10
        with pytest.raises(DeltaError, match="damaged|stream|order|apply"):
            dec.apply(bytes(bad))
        _unchanged(dec, vec, h, 1)
    with pytest.raises(DeltaError, match="damaged"):
        dec.apply(good[:-1])
    with pytest.raises(DeltaError, match="not an adasr model record"):
        dec.apply(b"junk")
    _unchanged(dec, vec, h, 1)
    dec.apply(good)  # the intact record still applies afterwards
    assert dec.next_segment == 2


def test_out_of_order_and_repeated_delta_refused(stream):
    dec = _decoder(stream)
    vec, h = dec.vector.clone(), dec.hash
    with pytest.raises(DeltaError, match="out of order: delta for segment 1, expected segment 0"):
        dec.apply(stream.deltas[1])
    _unchanged(dec, vec, h, 0)
    dec.apply(stream.deltas[0])
    vec, h = dec.vector.clone(), dec.hash
    with pytest.raises(DeltaError, match="out of order"):
        dec.apply(stream.deltas[0])
    _unchanged(dec, vec, h, 1)


@pytest.mark.slow
def test_foreign_delta_refused(stream):
    other = _stream(seed=1)  # another stream: a different base model (other init rounding, same arch)
    dec = _decoder(stream)
    vec, h = dec.vector.clone(), dec.hash
    if other.state.base_hash == stream.state.base_hash:  # same generic base: forge the chain instead
        dec.apply(stream.deltas[0])
        vec, h = dec.vector.clone(), dec.hash
        with pytest.raises(DeltaError, match="does not apply to this model|out of order"):
            dec.apply(other.deltas[1])
        _unchanged(dec, vec, h, 1)
    srvc = _stream(model="srvc", steps=1)
    with pytest.raises(DeltaError, match="another stream"):
        dec.apply(srvc.deltas[dec.next_segment])
    _unchanged(dec, vec, h, dec.next_segment)
    with pytest.raises(DeltaError, match="expected a delta"):
        dec.apply(stream.init)


def test_delta_for_a_diverged_model_refused(stream):
    """Same stream and segment, but the decoder's weights differ: the before-hash catches it."""
    dec = _decoder(stream)
    with torch.no_grad():
        dec.vector[0] += 1.0
    dec.hash = b"x" * 16
    with pytest.raises(DeltaError, match="does not apply"):
        dec.apply(stream.deltas[0])


@pytest.mark.slow
def test_full_record_checks():
    from adasr.nn.registry import build_model

    model = build_model("espcn", scale=2)
    spec = {"arch": "espcn", "args": {"scale": 2}, "scale": 2}
    rec = encode_full(model, spec, "float32")
    state = ModelState.from_full(rec)
    assert torch.equal(state.vector, model_vector(model))  # float32: lossless
    rec16 = encode_full(model, spec, "float16")
    assert len(rec16) < len(rec)
    bad = bytearray(rec16)
    bad[len(bad) // 2] ^= 1
    with pytest.raises(DeltaError, match="damaged"):
        ModelState.from_full(bytes(bad))


def test_masked_adam_changes_only_the_mask_and_keeps_state():
    from adasr.nn.registry import build_model

    lr, hr = _frames(n=2)
    torch.manual_seed(0)
    model = build_model("espcn", scale=2)
    before = model_vector(model)
    ad = SparseAdapter(model, AdaptConfig(strategy="last", eta=0.1, steps=3, batch=2, patch=8))
    idx, losses = ad.adapt(PatchSampler(lr, hr, 2, 8, 2, torch.device("cpu")), 0)
    changed = torch.nonzero(model_vector(model) != before).flatten()
    assert set(changed.tolist()) <= set(idx.tolist()) and changed.numel() > 0
    assert idx.min() == before.numel() - idx.numel()  # last layers
    # Adam's moments follow the full gradient (Algorithm 3), not only the mask
    outside = torch.ones(before.numel(), dtype=torch.bool)
    outside[idx] = False
    assert ad.v[outside].abs().sum() > 0 and ad.t == 3
    assert len(losses) == 3


def _gated(rd_lambda, updates="rd", lookahead=1):
    lr, hr = _frames()
    settings = EncodeSettings(tau=0.08, delta_dtype="int8", device="cpu", updates=updates, rd_lambda=rd_lambda,
                              rd_lookahead=lookahead,
                              adapt=AdaptConfig(eta=0.05, steps=2, batch=2, patch=8, lr=3e-3))
    return build_model_stream(lr, hr, Fraction(25), settings)


def _chosen(seg, lam):
    """The candidate with the lowest error + lambda * bits, or None (nothing sent) when none pays."""
    best = max(seg["rd"], key=lambda c: c["saved_sse"] - lam * c["cost_bits"], default=None)
    return best if best is not None and best["saved_sse"] - lam * best["cost_bits"] > 0 else None


def test_rd_gate_sends_only_the_updates_that_pay():
    free = _gated(0.0)  # bits cost nothing: the candidate that removes the most error is sent, if any does
    assert any(s["sent"] for s in free.segments)
    for s in free.segments:
        assert [c["share"] for c in s["rd"]] == [1.0, 0.5, 0.25]  # the update, then its largest halves
        assert s["rd"][0]["cost_bits"] > s["rd"][1]["cost_bits"] > s["rd"][2]["cost_bits"] > 0
        pick = _chosen(s, 0.0)
        assert s["sent"] == (pick is not None) == (s["changed"] > 0)
        assert s["rd_share"] == (pick["share"] if pick else None)
    n = read_record(free.init)[1][1].numel()
    full = [s["changed"] for s in free.segments if s["rd_share"] == 1.0]
    assert all(0 < c <= round(0.05 * n) for c in full)
    dear = _gated(1e12)  # bits cost more than any error: nothing is sent, the receiver keeps the base
    assert not any(s["sent"] for s in dear.segments) and all(s["changed"] == 0 for s in dear.segments)
    dec = _decoder(dear)
    base = dec.vector.clone()
    for record in dear.deltas:
        dec.apply(record)  # the empty records are valid records
        assert read_record(record)[1].indices.numel() == 0
    assert torch.equal(dec.vector, base) and torch.equal(dear.state.vector, base)
    assert sum(map(len, dear.deltas)) < sum(map(len, free.deltas))
    # at a lambda between the two, the first segment (same start, same training) follows the rule
    first = free.segments[0]
    paying = [c["saved_sse"] / c["cost_bits"] for c in first["rd"] if c["saved_sse"] > 0]
    if paying:
        lam = 0.5 * max(paying)
        half = _gated(lam).segments[0]
        pick = _chosen(half, lam)
        assert pick is not None and half["sent"] and half["rd_share"] == pick["share"]


def test_rd_gate_counts_the_segments_an_update_persists_into():
    """An update is judged on its own segment and the next rd_lookahead ones (the receiver still
    holds it there); the last segments have fewer after them."""
    ends = [s["start"] + s["frames"] for s in _gated(0.0, lookahead=0).segments]
    for k in (0, 1, 2):
        segs = _gated(0.0, lookahead=k).segments
        assert len(segs) >= 3
        for t, s in enumerate(segs):
            assert s["rd_frames"] == [s["start"], ends[min(len(ends) - 1, t + k)]]
    # the first segment trains the same update whatever the look-ahead: only the frames it is judged on differ
    own, ahead = _gated(0.0, lookahead=0).segments[0], _gated(0.0, lookahead=1).segments[0]
    assert [c["cost_bits"] for c in own["rd"]] == [c["cost_bits"] for c in ahead["rd"]]
    assert [c["saved_sse"] for c in own["rd"]] != [c["saved_sse"] for c in ahead["rd"]]


def test_rd_gate_needs_a_lambda_and_a_known_rule():
    from adasr.errors import ConfigError

    with pytest.raises(ConfigError, match="rd_lambda"):
        _gated(None)
    with pytest.raises(ConfigError, match="update rule"):
        EncodeSettings(updates="sometimes")
    with pytest.raises(ConfigError, match="lambda"):
        EncodeSettings(updates="rd", rd_lambda=float("nan"))
    with pytest.raises(ConfigError, match="rd_lookahead"):
        EncodeSettings(updates="rd", rd_lookahead=-1)


def test_content_lambda_at_the_codecs_top_crf_steps_down():
    from adasr.stream.encoder import content_lambda, encode_content, initial_model

    lr, hr = _frames(n=4, h=64, w=96)
    for crf, other in ((30, 32), (50, 48)):  # CRF + 2, or CRF - 2 where CRF + 2 would pass x264's 51
        settings = EncodeSettings(codec="h264", crf=crf, preset="fast", device="cpu")
        content, decoded = encode_content(lr, Fraction(25), "h264", crf, "fast")
        rd = content_lambda(lr, hr, Fraction(25), settings, content, decoded, initial_model(settings)[0], every=2)
        assert rd["crf2"] == other and rd["lambda"] >= 0
        assert (rd["bits2"] < rd["bits"]) == (other > crf)  # a higher CRF spends fewer bits


@pytest.mark.parametrize("count", [1, 6, 7])
def test_int4_values_round_trip_and_refuse_what_the_encoder_never_writes(count):
    from adasr.stream.codec import _dequantise, quantise

    d = torch.linspace(-0.02, 0.013, count)
    raw, deq = quantise(d, "int4")
    assert len(raw) == 4 + (count + 1) // 2  # a float32 scale, then two values a byte
    assert torch.equal(_dequantise(raw, 3, count), deq)  # the decoder computes the encoder's values
    scale = float(d.abs().max()) / 7
    assert float((deq - d).abs().max()) <= scale / 2 * (1 + 1e-5)  # round to nearest: half a step
    bad = bytearray(raw)
    bad[4] = (bad[4] & 0xF0) | 0x08  # -8: outside [-7, 7]
    with pytest.raises(ValueError, match="-8"):
        _dequantise(bytes(bad), 3, count)
    if count % 2:
        pad = bytearray(raw)
        pad[-1] |= 0x10  # the odd count's unused high nibble
        with pytest.raises(ValueError, match="padding"):
            _dequantise(bytes(pad), 3, count)
