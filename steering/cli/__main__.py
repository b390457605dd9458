"""``python -m steering.cli``: the same as the ``steer`` command."""

import sys

from . import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
