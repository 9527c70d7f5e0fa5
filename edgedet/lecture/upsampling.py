"""The lecture's upsampling methods in NumPy (2x2 -> 4x4 tables, max unpooling, transposed convolution), each equal
to its torch counterpart (F.interpolate, F.max_unpool2d, F.conv_transpose2d) within 1e-5.

These are worked examples, not runtime code: the device runtime resamples masks and semantic logits straight to
frame pixels with the linear taps of `edgedet.device.upsample`, which `bilinear` here reuses for its general path.

Arrays are (..., h, w): any leading axes (channels, batch) are carried along. Coordinates follow torch:
align_corners=False maps output pixel centres onto input pixel centres, src = (dst + 0.5) * in / out - 0.5;
align_corners=True maps the corner pixels onto each other, src = dst * (in - 1) / (out - 1).
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple

import numpy as np

from edgedet.device.errors import EdgedetError
from edgedet.device.upsample import interpolate_cols, interpolate_rows, linear_taps_at

MODES = ("nearest", "bed_of_nails", "bilinear", "bicubic")
CUBIC_A = -0.75  # torch's bicubic convolution coefficient


def upsample(x: np.ndarray, size_hw: Tuple[int, int], mode: str = "bilinear", align_corners: bool = False) -> np.ndarray:
    """(..., h, w) -> (..., H, W) float32 with one of MODES.

    nearest:      torch 'nearest' (src = floor(dst * in / out)).
    bed_of_nails: zero insertion, input value at the top-left of each (H/h, W/w) block; integer factors only.
    bilinear:     torch 'bilinear' with `align_corners`.
    bicubic:      torch 'bicubic' (a = -0.75, border indices clamped) with `align_corners`.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2:
        raise EdgedetError(f"upsample needs an array of at least 2 dimensions (..., h, w), got shape {x.shape}")
    out_h, out_w = int(size_hw[0]), int(size_hw[1])
    if out_h <= 0 or out_w <= 0:
        raise EdgedetError(f"upsample size must be positive, got {size_hw}")
    if mode == "nearest":
        return x[..., _nearest_index(x.shape[-2], out_h)[:, None], _nearest_index(x.shape[-1], out_w)]
    if mode == "bed_of_nails":
        return _bed_of_nails(x, out_h, out_w)
    if mode == "bilinear":
        return bilinear(x, (out_h, out_w), align_corners)
    if mode == "bicubic":
        return _cubic_axis(_cubic_axis(x, out_w, align_corners, axis=-1), out_h, align_corners, axis=-2)
    raise EdgedetError(f"unknown upsample mode {mode!r}; expected one of {', '.join(MODES)}")


def _nearest_index(in_size: int, out_size: int) -> np.ndarray:
    """torch 'nearest' source index: min(floor(dst * (in / out)), in - 1), in float32 as torch computes it."""
    scale = np.float32(in_size) / np.float32(out_size)
    index = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(index, in_size - 1)


def _bed_of_nails(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """(..., h, w) -> float32 (..., out_h, out_w) zeros with x at the top-left of every (out_h/h, out_w/w) block."""
    h, w = x.shape[-2:]
    if out_h % h or out_w % w:
        raise EdgedetError(f"bed of nails needs integer factors, got {h}x{w} -> {out_h}x{out_w}")
    out = np.zeros((*x.shape[:-2], out_h, out_w), dtype=np.float32)
    out[..., ::out_h // h, ::out_w // w] = x
    return out


def source_coords(in_size: int, out_size: int, align_corners: bool) -> np.ndarray:
    """float32 (out,) source coordinate of every output pixel (torch's convention, unclamped)."""
    dst = np.arange(out_size, dtype=np.float32)
    if align_corners:
        scale = np.float32((in_size - 1) / (out_size - 1)) if out_size > 1 else np.float32(0)
        return dst * scale
    return (dst + np.float32(0.5)) * np.float32(in_size / out_size) - np.float32(0.5)


def linear_taps(in_size: int, out_size: int, align_corners: bool = False):
    """Taps of a bilinear resize along one axis: (index0, index1, weight1), each (out,)."""
    return linear_taps_at(source_coords(in_size, out_size, align_corners), in_size)


def bilinear(x: np.ndarray, size_hw: Tuple[int, int], align_corners: bool = False) -> np.ndarray:
    """torch 'bilinear' resize of (..., h, w) float32 to (..., H, W), separable.

    The column pass runs first, on the small input; the row pass, which writes the large output, is a batched
    product of small mixing matrices with windows of whole source rows. Exact power-of-two factors
    (align_corners=False, the usual logits-to-input case) take `_bilinear_power_of_two`: periodic taps, no gathers.
    """
    x = np.asarray(x, dtype=np.float32)
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    factor_y, factor_x = _power_of_two_factor(h, size_hw[0]), _power_of_two_factor(w, size_hw[1])
    if factor_y and factor_x and not align_corners:
        return _bilinear_power_of_two(x.reshape(-1, h, w), factor_y, factor_x).reshape(*lead, *size_hw)
    wide = interpolate_cols(x.reshape(-1, h, w), linear_taps(w, size_hw[1], align_corners))
    return _resize_rows(wide, size_hw[0], align_corners).reshape(*lead, size_hw[0], size_hw[1])


def _power_of_two_factor(in_size: int, out_size: int) -> int:
    """out / in when it is an exact power of two (1, 2, 4, ...), else 0. Only then are torch's float32 source
    coordinates (dst + 0.5) / factor - 0.5 exact, so the periodic taps below equal torch's weights exactly."""
    if in_size <= 0:
        return 0
    factor, rest = divmod(out_size, in_size)
    return factor if rest == 0 and factor & (factor - 1) == 0 else 0


def _bilinear_power_of_two(planes: np.ndarray, factor_y: int, factor_x: int) -> np.ndarray:
    """(n, h, w) float32 -> (n, h * factor_y, w * factor_x), align_corners=False, for power-of-two factors.

    With an integer factor the taps repeat every `factor` outputs: output i * f + p mixes source i with its
    neighbour i - 1 or i + 1 (weight |(p + 0.5) / f - 0.5|), clamped at the borders. So one small mixing matrix
    serves every tile of source pixels; windows of the edge-padded source are strided views (no gathers), and
    each pass is one batched matrix product writing its output once. Channels go in blocks whose row-padded
    column-pass result stays in cache until the row pass reads it.
    """
    n, h, w = planes.shape
    out_h, out_w = h * factor_y, w * factor_x
    padded = np.empty((n, h, w + 2), dtype=np.float32)  # columns -1 and w repeat the border columns
    padded[:, :, 1:-1] = planes
    padded[:, :, 0], padded[:, :, -1] = planes[:, :, 0], planes[:, :, -1]
    out = np.empty((n, out_h, out_w), dtype=np.float32)
    block = max(1, min(n, _BLOCK_BYTES // ((h + 2) * out_w * 4)))
    wide = np.empty((block, h + 2, out_w), dtype=np.float32)  # column-pass result with rows -1 and h repeated
    col_tile, row_tile = min(_COL_TILE, w), min(_ROW_TILE, h)
    col_mix = _periodic_mix(factor_x, col_tile).T  # matmul takes the transposed view as it is
    row_mix = _periodic_mix(factor_y, row_tile)
    for start in range(0, n, block):
        count = min(block, n - start)
        _cols_periodic(padded[start:start + count], factor_x, col_tile, col_mix, wide[:count])
        wide[:count, 0], wide[:count, -1] = wide[:count, 1], wide[:count, -2]
        _rows_periodic(wide[:count], factor_y, row_tile, row_mix, out[start:start + count])
    return out


_BLOCK_BYTES = 2 << 20  # channels per block: their column-pass results (h + 2, W) float32 fit in this many bytes (L2)
_COL_TILE = 8  # source columns per mixing matrix in the column pass (K = tile + 2 per product)
_ROW_TILE = 4  # source rows per mixing matrix in the row pass


@functools.lru_cache(maxsize=64)
def _periodic_mix(factor: int, tile: int) -> np.ndarray:
    """float32 (tile * factor, tile + 2), read-only and cached: output i * factor + p of a tile from its
    edge-padded sources (column j of the matrix is source j - 1), weights of torch's align_corners=False taps."""
    mix = np.zeros((tile * factor, tile + 2), dtype=np.float32)
    for phase in range(factor):
        offset = (phase + 0.5) / factor - 0.5  # source position minus i, in (-0.5, 0.5), exact in float32
        rows = np.arange(tile) * factor + phase
        near = np.arange(tile) + 1
        other = near + (1 if offset >= 0 else -1)
        mix[rows, near] = 1 - abs(offset)
        mix[rows, other] = abs(offset)
    mix.setflags(write=False)
    return mix


def _strided(base: np.ndarray, shape, strides) -> np.ndarray:
    """A view of `base` (whose memory it shares) with the given shape and byte strides, windows may overlap.
    `base` must be a C-contiguous array allocated here or a view of one (its owner backs the new view)."""
    return np.ndarray(shape, dtype=base.dtype, buffer=base.base if base.base is not None else base,
                      offset=_offset(base), strides=strides)


def _offset(view: np.ndarray) -> int:
    root = view.base if view.base is not None else view
    return view.__array_interface__["data"][0] - root.__array_interface__["data"][0]


def _cols_periodic(padded: np.ndarray, factor: int, tile: int, mix_t: np.ndarray, wide: np.ndarray) -> None:
    """Column pass: padded (b, h, w + 2) -> rows 1..h of wide (b, h + 2, w * factor); mix_t (tile + 2, tile * factor)."""
    b, h, w = padded.shape[0], padded.shape[1], padded.shape[2] - 2
    tiles, rest = divmod(w, tile)
    sp, sw = padded.strides, wide.strides
    body = wide[:, 1:-1]
    if tiles:
        src = _strided(padded, (tiles, b, h, tile + 2), (tile * sp[2], sp[0], sp[1], sp[2]))
        dst = _strided(body, (tiles, b, h, tile * factor), (tile * factor * sw[2], sw[0], sw[1], sw[2]))
        np.matmul(src, mix_t, out=dst)
    if rest:
        np.matmul(padded[:, :, tiles * tile:], _periodic_mix(factor, rest).T, out=body[:, :, tiles * tile * factor:])


def _rows_periodic(wide: np.ndarray, factor: int, tile: int, mix: np.ndarray, out: np.ndarray) -> None:
    """Row pass: wide (b, h + 2, W) (rows -1 and h repeated) -> out (b, h * factor, W); mix (tile * factor, tile + 2)."""
    b, h, width = wide.shape[0], wide.shape[1] - 2, wide.shape[2]
    tiles, rest = divmod(h, tile)
    sw, so = wide.strides, out.strides
    if tiles:
        src = _strided(wide, (b, tiles, tile + 2, width), (sw[0], tile * sw[1], sw[1], sw[2]))
        dst = _strided(out, (b, tiles, tile * factor, width), (so[0], tile * factor * so[1], so[1], so[2]))
        np.matmul(mix, src, out=dst)
    if rest:
        np.matmul(_periodic_mix(factor, rest), wide[:, tiles * tile:], out=out[:, tiles * tile * factor:])


def _resize_rows(planes: np.ndarray, out_h: int, align_corners: bool) -> np.ndarray:
    """Linear resize along axis 1 of (n, h, W) float32 -> (n, out_h, W) (torch's coordinates)."""
    return interpolate_rows(planes, linear_taps(planes.shape[1], out_h, align_corners))


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    """(n,) fractional offsets -> (n, 4) weights of taps at floor-1 .. floor+2 (torch's cubic convolution)."""
    a = np.float32(CUBIC_A)

    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1).astype(np.float32)


def _cubic_axis(x: np.ndarray, out_size: int, align_corners: bool, axis: int) -> np.ndarray:
    """Bicubic resize along one axis (-1 or -2), indices clamped to the border as torch does."""
    in_size = x.shape[axis]
    src = source_coords(in_size, out_size, align_corners)
    base = np.floor(src).astype(np.int64)
    weights = _cubic_weights((src - base).astype(np.float32))
    shape = (-1, 1) if axis == -2 else (-1,)
    out = np.zeros((*x.shape[:axis % x.ndim], out_size, *x.shape[axis % x.ndim + 1:]), dtype=np.float32)
    for tap in range(4):
        index = np.clip(base - 1 + tap, 0, in_size - 1)
        out += np.take(x, index, axis=axis) * weights[:, tap].reshape(shape)
    return out


def max_unpool(x: np.ndarray, indices: np.ndarray, output_size_hw: Tuple[int, int]) -> np.ndarray:
    """torch F.max_unpool2d: scatter (..., h, w) values to (..., H, W) zeros at `indices`, flat positions
    (row * W + col) into each H x W plane as returned by max_pool2d(return_indices=True)."""
    x = np.asarray(x, dtype=np.float32)
    indices = np.asarray(indices, dtype=np.int64)
    if indices.shape != x.shape:
        raise EdgedetError(f"max_unpool: indices shape {indices.shape} differs from input shape {x.shape}")
    out_h, out_w = int(output_size_hw[0]), int(output_size_hw[1])
    if indices.size and (indices.min() < 0 or indices.max() >= out_h * out_w):
        raise EdgedetError(f"max_unpool: indices out of range for a {out_h}x{out_w} output")
    planes = x.reshape(-1, x.shape[-2] * x.shape[-1])
    out = np.zeros((len(planes), out_h * out_w), dtype=np.float32)
    np.put_along_axis(out, indices.reshape(len(planes), -1), planes, axis=1)
    return out.reshape(*x.shape[:-2], out_h, out_w)


def conv_transpose2d(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None, stride: int = 2,
                     padding: int = 1, output_padding: int = 1) -> np.ndarray:
    """torch F.conv_transpose2d (groups=1, dilation=1): x (N, Cin, h, w) or (Cin, h, w), weight (Cin, Cout, kh, kw).

    Each input pixel stamps weight * value into the output, `stride` pixels apart, overlaps summed; then
    `padding` rows/cols are trimmed from every border and `output_padding` added at the bottom/right. The
    lecture's example (3x3, stride 2, 2x2 -> 4x4) is padding=1, output_padding=1: the 5x5 stamp trimmed top/left.
    Output (N, Cout, H, W) with H = (h - 1) * stride - 2 * padding + kh + output_padding.
    """
    x = np.asarray(x, dtype=np.float32)
    squeeze = x.ndim == 3
    x = x[None] if squeeze else x
    weight = np.asarray(weight, dtype=np.float32)
    if x.ndim != 4 or weight.ndim != 4 or weight.shape[0] != x.shape[1]:
        raise EdgedetError(f"conv_transpose2d: input {x.shape} and weight {weight.shape} do not match "
                           f"(weight must be (Cin, Cout, kh, kw))")
    n, _, h, w = x.shape
    c_out, kh, kw = weight.shape[1:]
    full_h, full_w = (h - 1) * stride + kh + output_padding, (w - 1) * stride + kw + output_padding
    full = np.zeros((n, c_out, full_h, full_w), dtype=np.float32)
    for a in range(kh):
        for b in range(kw):
            stamp = np.einsum("nchw,cd->ndhw", x, weight[:, :, a, b])
            full[:, :, a:a + (h - 1) * stride + 1:stride, b:b + (w - 1) * stride + 1:stride] += stamp
    out = full[:, :, padding:full_h - padding, padding:full_w - padding]
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float32).reshape(1, -1, 1, 1)
    out = np.ascontiguousarray(out)
    return out[0] if squeeze else out
