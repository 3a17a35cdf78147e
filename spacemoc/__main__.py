import sys

from spacemoc.cli import main

sys.exit(main())
