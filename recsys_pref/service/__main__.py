"""`python -m recsys_pref.service --model DIR ...`: the server without the rest of the CLI."""
import sys

from recsys_pref.service.main import main

sys.exit(main())
