from fedota.cli.main import main

raise SystemExit(main())
