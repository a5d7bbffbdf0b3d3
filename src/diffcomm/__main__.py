"""``python -m diffcomm``."""

import sys

from diffcomm.cli import main

sys.exit(main())
