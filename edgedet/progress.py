"""Progress bars on stderr, drawn by tqdm: redrawn in place on a terminal, silent when stderr is a file or a pipe.

tqdm is imported inside these functions, so importing a verb's module stays cheap until a bar is drawn.
"""
from __future__ import annotations

import sys

# "eval      12/300 [###.....................] 41.2img/s ETA 00:07, box 1.234": the same look for every verb
BAR_FORMAT = "{desc} {n:>6}/{total} [{bar:24}] {rate_fmt} ETA {remaining}{postfix}"
BAR_CHARS = ".#"  # empty, full


def progress_bar(total: int, desc: str, unit: str = "it", enabled: bool = True):
    """A tqdm bar over `total` steps on stderr: `.update(n=1)`, `.set_postfix_str(text)`, `.close()`, or `with`.

    Drawn only when `enabled` and stderr is a terminal (tqdm's disable=None), redrawn at most 5 times a second.
    """
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=None if enabled else True,
                bar_format=BAR_FORMAT, ascii=BAR_CHARS, mininterval=0.2)


def bar_text(done: int, total: int, width: int = 20) -> str:
    """The bar alone as text, e.g. "[#####...............]" for 1 of 4, for a log line that is not redrawn."""
    from tqdm import tqdm

    return tqdm.format_meter(done, max(total, 1), 0.0, bar_format=f"[{{bar:{width}}}]", ascii=BAR_CHARS)
