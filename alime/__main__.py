from alime.cli import main

raise SystemExit(main())
