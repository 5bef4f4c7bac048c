from congeal.cli import main

raise SystemExit(main())
