"""The lecture's sliding-window count ("Sliding Window Computational Complexity"): how many boxes a detector that
classifies every window would have to look at.

A window of h x w pixels at stride 1 fits at (W - w + 1)(H - h + 1) positions in an H x W image; summed over every
size 1 <= h <= H, 1 <= w <= W that is sum_h (H - h + 1) * sum_w (W - w + 1) = H(H+1)/2 * W(W+1)/2.
For an 800x600 image that is 600*601/2 * 800*801/2 = 180,300 * 320,400 = 57,768,120,000, about 5.78e10: 58 billion.
The lecture's slide says "57 million", which is wrong by a factor of 1000 (the digits are right, the unit is not).
"""
from __future__ import annotations

from typing import Iterator, Tuple


def window_count(height: int, width: int) -> int:
    """Windows of every size and position (stride 1) in a height x width image: H(H+1)/2 * W(W+1)/2 (exact int)."""
    _check_size(height, width)
    return height * (height + 1) // 2 * (width * (width + 1) // 2)


def window_count_by_size(height: int, width: int) -> int:
    """The lecture's double sum over window sizes of (W - w + 1)(H - h + 1) positions, term by term."""
    _check_size(height, width)
    return sum((width - w + 1) * (height - h + 1) for h in range(1, height + 1) for w in range(1, width + 1))


def enumerate_windows(height: int, width: int) -> Iterator[Tuple[int, int, int, int]]:
    """Every window as (x1, y1, x2, y2) integer pixel corners (exclusive x2, y2) inside a height x width image."""
    _check_size(height, width)
    for y1 in range(height):
        for y2 in range(y1 + 1, height + 1):
            for x1 in range(width):
                for x2 in range(x1 + 1, width + 1):
                    yield x1, y1, x2, y2


def _check_size(height: int, width: int) -> None:
    if int(height) != height or int(width) != width or height < 0 or width < 0:
        raise ValueError(f"image size must be two non-negative integers, got {height} x {width}")
