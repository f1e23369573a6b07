"""``python -m players CONFIG.json``: one player process (see players.player)."""

import sys

from players.player import main

if __name__ == "__main__":
    sys.exit(main())
