"""`python -m kbsync`."""

from kbsync.cli import main

main()
