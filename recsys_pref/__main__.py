import sys

from recsys_pref.cli import main

sys.exit(main())
