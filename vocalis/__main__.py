from vocalis.cli import main

raise SystemExit(main())
