"""``python -m plexa`` is the ``plexa`` command."""

from plexa.cli import main

main()
