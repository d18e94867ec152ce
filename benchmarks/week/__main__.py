import sys

from benchmarks.week import main

sys.exit(main())
