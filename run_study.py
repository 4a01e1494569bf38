#!/usr/bin/env python
"""Entry point: ``python run_study.py --help``."""
import sys

from mmc_sweep.cli import main

if __name__ == "__main__":
    sys.exit(main())
