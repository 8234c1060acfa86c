"""`python -m callback_server`: the webhook receiver and job status API."""

from callback_server.serve import main

raise SystemExit(main())
