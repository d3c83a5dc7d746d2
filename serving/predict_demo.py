"""`python -m serving.predict_demo`: what `make predict-grpc` / `make predict-rest` run.

Sends a pipeline config's first test images (uint8 pixels, through serving_default) or
image files (encoded, through predict_image_bytes) to the model named in the config, and
prints the classes next to the true ones. Reading the test split needs the pipeline, so
this lives beside the client rather than in it: `serving.client` stays installable alone.

    python -m serving.predict_demo --config configs/fashion_cnn.yaml --test-images 5
    python -m serving.predict_demo --protocol rest --port 8501 --image shirt.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from serving.client.cli import (
    BYTES_INPUT,
    BYTES_SIGNATURE,
    DEFAULT_LABEL,
    PIXELS_INPUT,
    PIXELS_SIGNATURE,
    image_bytes,
    predict_and_show,
)


def read_test_images(config_path: Path, count: int) -> tuple[str, np.ndarray, list[str]]:
    """Return (model name, the first `count` test inputs, their true class names) of a config."""
    from pipeline.config import load_config
    from pipeline.stages.data import load_source

    run_config = load_config(config_path)
    source = load_source(run_config.data, run_config.seed)
    inputs, labels = [], []
    for value, label in source.splits["test"].examples.take(count).as_numpy_iterator():
        inputs.append(value)
        labels.append(source.class_names[int(label)])
    return run_config.name, np.stack(inputs), labels


def main(
    config: Annotated[Path, typer.Option(help="Pipeline config: the model name and the test "
                                         "split.")] = Path("configs/fashion_cnn.yaml"),
    model: str = typer.Option(None, help="Model name (default: the name in --config)."),
    image: Annotated[list[Path] | None, typer.Option(
        help="PNG/JPEG file(s), sent encoded through predict_image_bytes.")] = None,
    test_images_count: Annotated[int, typer.Option(
        "--test-images", help="Send the first N test images of --config as pixels.")] = 5,
    protocol: str = typer.Option("grpc", help="grpc or rest."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(None, help="Defaults to 8500 (gRPC) or 8501 (REST)."),
    label: str = typer.Option(DEFAULT_LABEL, help="Version label: stable (the champion), canary "
                              "(the challenger); the highest version if the server has none."),
    top_k: int = typer.Option(3, help="How many classes to list per example."),
    timeout: float = typer.Option(30.0, help="Seconds to wait for the answer."),
):
    """Send test images (or image files) to a served model and print its classes."""
    truth = None
    if image:
        if model is None:
            from pipeline.config import load_config

            model = load_config(config).name
        signature, inputs = BYTES_SIGNATURE, {BYTES_INPUT: image_bytes(list(image))}
    else:
        name, pixels, truth = read_test_images(config, test_images_count)
        model = model or name
        signature, inputs = PIXELS_SIGNATURE, {PIXELS_INPUT: pixels}
    predict_and_show(protocol, host, port, timeout, model, lambda client: (signature, inputs),
                     label=label, top_k=top_k, truth=truth)


if __name__ == "__main__":
    typer.run(main)
