"""benchmarks/int8_saturation.py: the 16-bit pair sums an x86 CPU without VNNI adds."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.int8_saturation import im2col_nhwc, pair_sums, weight_bound, weight_rows


def conv_int(a: np.ndarray, w: np.ndarray, stride: int, pads, zp: int) -> np.ndarray:
    """Direct integer convolution (C, H, W) x (Cout, C, kh, kw), padding = zp."""
    t, left, b, r = pads
    c, h, wd = a.shape
    ap = np.full((c, h + t + b, wd + left + r), zp, np.int64)
    ap[:, t:t + h, left:left + wd] = a
    co, _, kh, kw = w.shape
    ho, wo = (ap.shape[1] - kh) // stride + 1, (ap.shape[2] - kw) // stride + 1
    out = np.zeros((ho * wo, co), np.int64)
    for y in range(ho):
        for x in range(wo):
            patch = ap[:, y * stride:y * stride + kh, x * stride:x * stride + kw]
            out[y * wo + x] = (w.astype(np.int64) * patch).sum(axis=(1, 2, 3))
    return out


@pytest.mark.parametrize("cin,k,stride,pads", [(4, 3, 1, (1, 1, 1, 1)), (3, 3, 2, (1, 1, 0, 0)),
                                               (6, 1, 1, (0, 0, 0, 0))])
def test_the_columns_in_kernel_order_give_the_convolution(cin, k, stride, pads):
    rng = np.random.default_rng(cin)
    a = rng.integers(0, 256, (cin, 7, 6)).astype(np.uint8)
    w = rng.integers(-127, 128, (5, cin, k, k)).astype(np.int8)
    cols = im2col_nhwc(a, k, k, stride, pads, 17)
    cols = np.pad(cols, ((0, 0), (0, cols.shape[1] % 2)))
    assert np.array_equal(cols.astype(np.int64) @ weight_rows(w).T.astype(np.int64),
                          conv_int(a, w, stride, pads, 17))


def test_two_big_products_of_one_sign_saturate_and_opposite_signs_do_not():
    a = np.full((2, 1, 1), 255, np.uint8)
    assert pair_sums(a, np.array([127, 127], np.int8).reshape(1, 2, 1, 1)) == (64770, 1)
    assert pair_sums(a, np.array([127, -127], np.int8).reshape(1, 2, 1, 1)) == (0, 0)
    # the pairs are neighbouring channels: (0, 1) and (2, 3), never (1, 2)
    w = np.array([100, -100, 100, -100], np.int8).reshape(1, 4, 1, 1)
    assert pair_sums(np.full((4, 1, 1), 255, np.uint8), w) == (0, 0)
    assert weight_bound(w) == 255 * 100
    assert weight_bound(np.array([127, 127], np.int8).reshape(1, 2, 1, 1)) == 64770
