"""``python -m medcode`` runs the command line."""

from medcode.cli import main

main()
