"""The network input size flag (`--imgsz`): one parser for `edgedet run`, `eval`, `export`, `calibrate`, `train`
and `data synth`."""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from .errors import EdgedetError


def parse_imgsz(imgsz, stride: int = 1, minimum: int = 1) -> Optional[Tuple[int, int]]:
    """None, 320, "320", "320,256", "320x256", (320, 256) -> (height, width) in pixels; None stays None.

    One value means a square input. Each side must be an integer >= `minimum` and divisible by `stride`;
    anything else raises EdgedetError naming the value given.
    """
    if imgsz is None:
        return None
    values = _integers(imgsz)
    if values is None or len(values) not in (1, 2):
        raise EdgedetError(f"--imgsz {imgsz!r}: expected one or two integers (height, width), e.g. 320 or 320,256")
    height, width = values * 2 if len(values) == 1 else values
    if min(height, width) < max(minimum, 1):
        raise EdgedetError(f"--imgsz {imgsz!r}: each side must be at least {max(minimum, 1)}")
    if height % stride or width % stride:
        raise EdgedetError(f"--imgsz {imgsz!r}: each side must be a multiple of {stride}")
    return height, width


def _integers(imgsz) -> Optional[List[int]]:
    """The integers of a flag text ("320", "320,256", "320x256") or a number or sequence; None if not integers."""
    if isinstance(imgsz, str):
        imgsz = [part for part in imgsz.replace("x", ",").split(",") if part.strip()]
    try:
        return [int(value) for value in np.atleast_1d(imgsz)]
    except (TypeError, ValueError):
        return None
