"""``python -m kibble`` is the ``kibble`` command."""

from kibble.cli import main

main()
