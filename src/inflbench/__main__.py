"""``python -m inflbench``: the ``inflbench`` command."""
from inflbench.cli import main

main()
