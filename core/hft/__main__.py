"""``python -m hft`` is the ``hft`` command."""

import sys

from hft._cli import main

sys.exit(main())
