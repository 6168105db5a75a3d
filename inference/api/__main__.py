import sys

from inference.api.server import main

sys.exit(main())
