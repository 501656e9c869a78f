"""``python -m plexa`` is the ``plexa`` command."""

from plexa.edges.cli import main

main()
