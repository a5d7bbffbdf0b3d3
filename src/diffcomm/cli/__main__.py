"""``python -m diffcomm.cli``."""

import sys

from diffcomm.cli import main

sys.exit(main())
