"""`python -m edgedet VERB ...` (and `torchrun -m edgedet train ...`)."""
import sys

from edgedet.cli import main

sys.exit(main())
