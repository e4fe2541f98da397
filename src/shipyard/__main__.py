"""`python -m shipyard`: the `shipyard` command."""

import sys

from .cli.main import main

sys.exit(main())
