"""`python -m scribewatch …` is the `scribewatch` command."""

import sys

from scribewatch.cli import main

sys.exit(main())
