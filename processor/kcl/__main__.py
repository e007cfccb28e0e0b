"""``python -m processor.kcl``: our routes as a KCL MultiLang record processor."""

import sys

from processor.kcl.record_processor import main

sys.exit(main())
