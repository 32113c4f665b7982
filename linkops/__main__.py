"""`python -m linkops` is the same as the `linkops` console script."""

import sys

from linkops.cli import main

sys.exit(main())
