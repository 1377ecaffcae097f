import sys

from kubeclr.cli import main

sys.exit(main())
