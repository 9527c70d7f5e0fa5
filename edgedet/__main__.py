"""`python -m edgedet VERB ...` (and `torchrun -m edgedet train ...`)."""
import sys

from .cli import main

sys.exit(main())
