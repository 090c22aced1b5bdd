"""``python -m nvmlstm``: the ``nvmlstm`` command."""

import sys

from .cli import main

sys.exit(main())
