"""A plugin whose hook calls sys.exit(): it must not end the command."""
import sys

from xraybench import hookimpl


@hookimpl
def register_models(register):
    sys.exit("bye")
