"""A plugin that calls sys.exit() while being imported: it must not end the command."""
import sys

sys.exit(3)
