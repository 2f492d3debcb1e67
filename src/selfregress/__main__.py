import sys

from selfregress.cli import main

sys.exit(main())
