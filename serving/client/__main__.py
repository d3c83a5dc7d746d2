"""`python -m serving.client`: the client's command line (serving/client/cli.py)."""

from serving.client.cli import app

if __name__ == "__main__":
    app(prog_name="python -m serving.client")
