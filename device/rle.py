"""COCO run-length encoding (RLE) of binary masks in NumPy: what the JSON-lines sink writes for each instance mask.

The format is COCO's (pycocotools' maskApi): a mask of shape (H, W) is flattened in column-major (Fortran) order
and stored as alternating run lengths, starting with a run of zeros (possibly 0); `rle_encode` gives
{"size": [H, W], "counts": str}, the counts in COCO's compressed 6-bit ASCII code, byte-identical to
pycocotools' encode. Only encoding runs on the device; reading RLEs back (decoding, areas, boxes, IoU) and
polygons are the host's, in edgedet/rle.py.
"""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

import numpy as np

from .errors import EdgedetError

RLE = dict  # {"size": [H, W], "counts": str | bytes | list of int}

_MAX_CHUNKS = 7  # 5 data bits per character; 7 characters hold any 32-bit signed difference


def counts_to_strings(counts: np.ndarray, offsets: np.ndarray) -> List[str]:
    """COCO compressed strings of many masks' run lengths in a few NumPy calls: mask i's runs are
    counts[offsets[i]:offsets[i + 1]] (int (total,), offsets int (N+1,)); each string is pycocotools' rleToString.

    Every value is written 5 bits per character, low bits first, until the rest is the sign extension of the last
    character's top bit; so a value takes 1 + (number of thresholds 2**(5k - 1) its magnitude reaches) characters.
    """
    counts = np.asarray(counts, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    values = counts.copy()
    position = np.arange(len(counts)) - np.repeat(offsets[:-1], np.diff(offsets))  # index inside its mask
    later = np.flatnonzero(position > 2)
    values[later] -= counts[later - 2]  # counts after the third are stored relative to the count two before
    chars = 1 + np.searchsorted(_CHAR_THRESHOLDS, values ^ (values >> 63), side="right")  # ~v for negative v
    ends = np.cumsum(chars)
    owner = np.repeat(np.arange(len(values)), chars)  # value of each character
    k = np.arange(len(owner)) - (ends - chars)[owner]  # character index inside its value
    more = k + 1 < chars[owner]
    code = ((values[owner] >> (5 * k)) & 0x1F) + 0x20 * more + 48  # >> is arithmetic, as C's on long
    text = code.astype(np.uint8).tobytes().decode("ascii")
    bounds = np.concatenate([[0], ends])[offsets].tolist()  # first character of each mask
    return [text[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


_CHAR_THRESHOLDS = np.array([1 << (5 * k - 1) for k in range(1, _MAX_CHUNKS)], dtype=np.int64)


def masks_to_counts(masks: np.ndarray, spans: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Run lengths of a stack of (H, W) masks: (counts int64 (total,), offsets int64 (N+1,)); mask i's runs are
    counts[offsets[i]:offsets[i + 1]]: its column-major run lengths, starting with a run of zeros (possibly 0).

    Only a box of each mask is scanned (an instance covers a small part of the frame): `spans` int (N, 4)
    [row0, row1, col0, col1) outside which mask i is all False, or without them its tight box (`tight_boxes`, a
    scan of the stack). The crops, column-major and each column between two zeros, are laid end to end and every
    change of value found in one pass.
    """
    masks = np.asarray(masks, dtype=bool)
    n, h, w = masks.shape
    boxes = tight_boxes(masks) if spans is None else np.asarray(spans, dtype=np.int64).reshape(n, 4)
    heights = boxes[:, 1] - boxes[:, 0] + 2  # crop rows plus a zero above and below
    sizes = heights * (boxes[:, 3] - boxes[:, 2])
    starts = np.concatenate([[0], np.cumsum(sizes)])
    columns = np.zeros(starts[-1], dtype=bool)
    for i in np.flatnonzero(sizes):
        r0, r1, c0, c1 = boxes[i]
        columns[starts[i]:starts[i + 1]].reshape(c1 - c0, heights[i])[:, 1:-1] = masks[i, r0:r1, c0:c1].T
    begins = np.flatnonzero(columns[1:] != columns[:-1]) + 1  # first element of every run of ones or zeros
    owner = np.searchsorted(starts, begins, side="right") - 1
    column, row = np.divmod(begins - starts[owner], heights[owner])
    marks = (boxes[owner, 2] + column) * h + boxes[owner, 0] + row - 1  # the same element in its whole mask
    return _marks_to_counts(marks, owner, n, h * w)


def tight_boxes(masks: np.ndarray) -> np.ndarray:
    """int64 (N, 4) [row0, row1, col0, col1) of the True pixels of each bool (H, W) mask; all 0 for an empty one.
    The whole stack is scanned once for columns; rows only inside each mask's band of columns."""
    n, h, w = masks.shape
    columns = masks.any(axis=1)  # (N, W)
    present = columns.any(axis=1)
    col0, col1 = columns.argmax(axis=1), w - columns[:, ::-1].argmax(axis=1)
    rows = np.zeros((n, h), dtype=bool)
    for i in np.flatnonzero(present):
        rows[i] = masks[i, :, col0[i]:col1[i]].any(axis=1)
    boxes = np.stack([rows.argmax(axis=1), h - rows[:, ::-1].argmax(axis=1), col0, col1], axis=1).astype(np.int64)
    boxes[~present] = 0
    return boxes


def _marks_to_counts(marks: np.ndarray, owner: np.ndarray, n: int, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Run starts `marks` (ascending flat indices per mask, mask ids `owner`) of n masks of `size` elements ->
    (counts, offsets) as `masks_to_counts`. A run ending at the bottom of one column and one starting at the top of
    the next meet at the same index: both marks go (the runs join); a mark at `size` (after the end) goes too."""
    drop = marks == size
    same = (marks[1:] == marks[:-1]) & (owner[1:] == owner[:-1])
    drop[1:] |= same
    drop[:-1] |= same
    marks, owner = marks[~drop], owner[~drop]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=n) + 1)])
    edges = np.full(offsets[-1], size, dtype=np.int64)  # each mask: its run starts, then `size`
    edges[np.arange(len(marks)) + owner] = marks
    counts = np.diff(edges, prepend=0)
    counts[offsets[:-1]] = edges[offsets[:-1]]  # every mask's first run (of zeros) starts at 0
    return counts, offsets


def rle_encode(mask: np.ndarray, spans: Optional[np.ndarray] = None) -> Union[RLE, List[RLE]]:
    """COCO compressed RLE of a bool/0-1 mask (H, W) -> dict, or of a stack (N, H, W) -> list of dicts.

    counts is a str (JSON-ready), size is [H, W]. A stack is encoded in one batch (`masks_to_counts`,
    `counts_to_strings`), scanning only a box of each mask: its span when given (int (N, 4) [row0, row1, col0,
    col1), all True pixels inside; (4,) for one mask), otherwise its tight box.
    """
    mask = np.asarray(mask)
    if mask.ndim == 2:
        return rle_encode(mask[None], None if spans is None else np.reshape(spans, (1, 4)))[0]
    if mask.ndim != 3:
        raise EdgedetError(f"rle_encode wants a (H, W) or (N, H, W) mask, got shape {mask.shape}")
    size = [int(mask.shape[1]), int(mask.shape[2])]
    return [{"size": list(size), "counts": text} for text in counts_to_strings(*masks_to_counts(mask, spans))]
