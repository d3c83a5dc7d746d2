"""`python -m serving.deploy_check`: see the package docstring."""

import sys

from serving.deploy_check import main

sys.exit(main())
