#!/usr/bin/env python3
"""Writes the small .npy fixtures that tests/unit/test_io.c reads.

numpy is the reference writer: the C reader must accept what numpy writes
and refuse what it does not support (Fortran order, big-endian). The values
are closed-form so the C test can recompute them without reading this file:

  f32_2x3.npy      float32 (2, 3)   v[i, j] = (i * 3 + j) * 0.25 - 1
  f64_4.npy        float64 (4,)     v[i] = 1 / (i + 1)
  i64_5.npy        int64   (5,)     v[i] = (i - 2) * 10**12
  i32_2x2x2.npy    int32   (2,2,2)  v[k] = k - 4  (flat index k)
  u8_3x4.npy       uint8   (3, 4)   v[k] = 20 * k + 3
  f32_scalar.npy   float32 ()       v = 2.5
  f32_empty.npy    float32 (0, 3)
  fortran.npy      float32 (2, 3) in Fortran order (refused)
  bigendian.npy    >f4 (3,)         (refused)
  f32_v2.npy       float32 (2, 3) as f32_2x3.npy, in format version 2.0

Run from the repository root: python3 tests/data/make_io_fixtures.py
"""
import os

import numpy as np

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "io")
os.makedirs(out, exist_ok=True)


def save(name, arr):
    np.save(os.path.join(out, name), arr, allow_pickle=False)


save("f32_2x3.npy", (np.arange(6, dtype=np.float32).reshape(2, 3) * np.float32(0.25) - np.float32(1)))
save("f64_4.npy", 1.0 / (np.arange(4, dtype=np.float64) + 1.0))
save("i64_5.npy", (np.arange(5, dtype=np.int64) - 2) * np.int64(10**12))
save("i32_2x2x2.npy", (np.arange(8, dtype=np.int32) - 4).reshape(2, 2, 2))
save("u8_3x4.npy", (np.arange(12, dtype=np.uint8) * 20 + 3).reshape(3, 4))
save("f32_scalar.npy", np.array(2.5, dtype=np.float32))
save("f32_empty.npy", np.zeros((0, 3), dtype=np.float32))
save("fortran.npy", np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)))
save("bigendian.npy", np.arange(3, dtype=">f4"))
with open(os.path.join(out, "f32_v2.npy"), "wb") as f:
    np.lib.format.write_array(
        f, np.arange(6, dtype=np.float32).reshape(2, 3) * np.float32(0.25) - np.float32(1), version=(2, 0)
    )
