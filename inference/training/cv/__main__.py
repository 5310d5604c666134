"""`python -m inference.training.cv prep|convert ...` (see `cli`)."""

import sys

from .cli import main

sys.exit(main())
