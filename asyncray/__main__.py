import sys

from asyncray._private.cli import main

sys.exit(main())
