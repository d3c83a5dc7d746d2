"""`python -m pipeline`: the command line of pipeline/cli/."""

from pipeline.cli import main

main()
