"""``python -m processor.cli``: the same as ``dsp``."""

import sys

from processor.cli import main

sys.exit(main())
