from appliance.cli.app import main

raise SystemExit(main())
