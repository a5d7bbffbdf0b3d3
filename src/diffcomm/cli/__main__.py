"""``python -m diffcomm.cli``."""

import sys

from diffcomm.cli import main

if __name__ == "__main__":
    sys.exit(main())
