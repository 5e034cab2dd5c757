"""``python -m ladderlens``: the same command line as the ``ladderlens`` script."""

import sys

from main import main

sys.exit(main())
