"""``python -m robench``: the same as the ``robench`` command."""

import sys

from robench.cli import main

sys.exit(main())
