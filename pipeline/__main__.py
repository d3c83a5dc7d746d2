"""`python -m pipeline`: the command line of pipeline/cli/."""

from pipeline.kernels import prefer_onednn

prefer_onednn()  # before TensorFlow is imported: oneDNN's kernels on every x86-64 CPU

from pipeline.cli import main  # noqa: E402  (imports TensorFlow)

main()
