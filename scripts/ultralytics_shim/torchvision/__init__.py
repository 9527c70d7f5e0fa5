"""Stand-in for `torchvision` inside the Ultralytics venv only (issue 13); no torchvision CPU build exists here.

Ultralytics needs torchvision's distribution metadata (the sibling torchvision-0.28.0.dist-info, the release that
pairs with torch 2.13) and `torchvision.ops.nms`; this package provides nothing else. It is never used by edgedet.
"""

from . import ops

__version__ = "0.28.0"
__all__ = ["ops"]
