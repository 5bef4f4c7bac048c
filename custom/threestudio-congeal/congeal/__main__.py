"""`python -m congeal`: the same as the `congeal` command."""
from congeal.cli import main

raise SystemExit(main())
