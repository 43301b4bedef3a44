"""python -m nodehost: the corral-node command (main.py)."""

import sys

from nodehost.main import main

sys.exit(main())
