import sys

from orfeas.cli import main

sys.exit(main())
