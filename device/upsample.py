"""Bilinear resampling by linear taps, as the runtime's masks and semantic maps use it (device/masks.py).

A resample along one axis is given by its taps (index0, index1, weight1) per output position, so any mapping
(a plain resize, or frame pixels through the letterbox into a prototype or logit map) goes through the same two
tiled kernels, `interpolate_rows` and `interpolate_cols`. Coordinates follow torch's F.interpolate with
align_corners=False; the lecture's upsampling methods (nearest, bed of nails, bicubic, max unpooling, transposed
convolution) are worked examples on the host side, in edgedet/lecture/upsampling.py.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Tuple

import numpy as np


def linear_taps_at(src: np.ndarray, in_size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation taps at source coordinates `src` (clamped to 0..in-1 like torch):
    (index0 int64, index1 int64, weight1 float32); value = v[i0] * (1 - w1) + v[i1] * w1."""
    src = np.clip(np.asarray(src, dtype=np.float32), 0, None)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, (src - i0).astype(np.float32)


def interpolate_rows(planes: np.ndarray, taps) -> np.ndarray:
    """Rows of (n, h, W) float32 mixed by linear taps (i0, i1, w1), each (out,) -> (n, out, W) float32.

    Taps must be non-decreasing (any resize or letterbox mapping is). Output rows come in tiles; each tile mixes
    a short window of consecutive source rows with a small (tile, window) matrix holding the two weights per row:
    one batched matrix product writes the output once, contiguously, with no per-element gather.
    """
    n, h, width = planes.shape
    tile = MAX_TILE
    while True:
        starts, window, mix = _mixing_tiles(taps, h, tile)
        if tile <= 4 or tile * window * width <= _SINGLE_THREAD_GEMM:
            break
        tile //= 2
    tiles = len(starts)
    windows = planes[:, starts[:, None] + np.arange(window)]  # (n, tiles, window, W)
    out = np.empty((n, tiles, tile, width), dtype=np.float32)  # given as out=, matmul writes it contiguously
    np.matmul(mix, windows, out=out)
    return out.reshape(n, tiles * tile, width)[:, :len(taps[0])]


def interpolate_cols(planes: np.ndarray, taps) -> np.ndarray:
    """Columns of (n, h, w) float32 mixed by linear taps (i0, i1, w1), each (out,) -> (n, h, out) float32.

    Per tile of output columns one product (rows, window) @ (window, tile) writes straight into the output
    (no transposes); rows go in chunks that keep each product single-threaded in OpenBLAS.
    """
    n, h, w = planes.shape
    flat = planes.reshape(n * h, w)
    starts, window, mix = _mixing_tiles(taps, w, MAX_TILE)
    mix_t = np.ascontiguousarray(mix.transpose(0, 2, 1))  # (tiles, window, tile)
    tile = mix.shape[1]
    out = np.empty((n * h, len(starts) * tile), dtype=np.float32)
    chunk = max(1, _SINGLE_THREAD_GEMM // (tile * window))
    for t, start in enumerate(starts):
        for r in range(0, n * h, chunk):
            np.matmul(flat[r:r + chunk, start:start + window], mix_t[t], out=out[r:r + chunk, t * tile:(t + 1) * tile])
    return out[:, :len(taps[0])].reshape(n, h, len(taps[0]))


MAX_TILE = 32  # output rows per mixing matrix
_SINGLE_THREAD_GEMM = 200_000  # keep m*n*k of each small product under OpenBLAS's multithreading threshold (262144)


def _mixing_tiles(taps, in_size: int, tile: int):
    """Split linear taps into tiles of `tile` outputs: (window start per tile (T,), window length, float32 mixing
    matrices (T, tile, window)); the last tile repeats the last tap. Read-only, cached by the taps' values: a
    video's frames resample through the same taps (the same letterbox), and building the matrices costs more than
    using them at the sizes drawing needs."""
    i0, i1, w1 = (np.ascontiguousarray(a) for a in taps)
    return _cached_mixing_tiles(i0.astype(np.int64).tobytes(), i1.astype(np.int64).tobytes(),
                                w1.astype(np.float32).tobytes(), in_size, tile)


@lru_cache(maxsize=64)
def _cached_mixing_tiles(i0_bytes: bytes, i1_bytes: bytes, w1_bytes: bytes, in_size: int, tile: int):
    i0, i1 = np.frombuffer(i0_bytes, dtype=np.int64), np.frombuffer(i1_bytes, dtype=np.int64)
    w1 = np.frombuffer(w1_bytes, dtype=np.float32)
    tiles = -(-len(i0) // tile)
    pad = tiles * tile - len(i0)
    i0, i1, w1 = (np.pad(a, (0, pad), mode="edge") for a in (i0, i1, w1))
    starts = i0[::tile]
    window = int(min(in_size, (i1.reshape(tiles, tile).max(axis=1) - starts).max() + 1))
    starts = np.minimum(starts, in_size - window)
    rows = np.arange(tiles * tile)
    offset = np.repeat(starts, tile)
    mix = np.zeros((tiles * tile, window), dtype=np.float32)
    np.add.at(mix, (rows, i0 - offset), 1 - w1)
    np.add.at(mix, (rows, i1 - offset), w1)
    mix = mix.reshape(tiles, tile, window)
    for array in (starts, mix):
        array.setflags(write=False)
    return starts, window, mix
