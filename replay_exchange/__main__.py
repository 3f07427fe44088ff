import sys

from replay_exchange.cli import main

sys.exit(main())
