"""One module per `congeal` subcommand (see congeal/cli.py)."""
