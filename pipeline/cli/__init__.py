"""The command line: `app` (app.py) and `main`, which `python -m pipeline` and `tfpipe` run."""

from pipeline.cli.app import app, main

__all__ = ["app", "main"]
