"""``python -m registry``: the same command as ``registry``."""

from registry.cli import main

main()
