"""`python -m stack`: the one-machine demo."""

from stack.demo import main

raise SystemExit(main())
