#!/usr/bin/env python3
"""Start the Bipupu server, or run one of its maintenance commands: `python run.py --help`."""

import sys

from bipupu_server.cli import main

if __name__ == "__main__":
    sys.exit(main())
