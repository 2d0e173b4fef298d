import sys

from xraybench.cli import main

if __name__ == "__main__":  # guarded: spawned child processes import this module as __mp_main__
    sys.exit(main())
