import sys

from portlane.edge.cli import main

sys.exit(main())
