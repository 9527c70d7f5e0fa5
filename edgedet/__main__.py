"""`python -m edgedet VERB ...` (and `torchrun -m edgedet train ...`)."""
import sys

from .cli import command

sys.exit(command())
