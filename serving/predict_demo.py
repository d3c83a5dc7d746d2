"""`python -m serving.predict_demo`: what `make predict-grpc` / `make predict-rest` run.

Sends a pipeline config's first test examples (uint8 pixels or strings, through
serving_default), image files (encoded, through predict_image_bytes) or strings of text
(`--text`, through serving_default's `text` input) to the model named in the config, and
prints the classes next to the true ones. Reading the test split needs the pipeline, so
this lives beside the client rather than in it: `serving.client` stays installable alone.

    python -m serving.predict_demo --config configs/fashion_cnn.yaml --test-images 5
    python -m serving.predict_demo --protocol rest --port 8501 --image shirt.png
    python -m serving.predict_demo --config configs/fortunes_langid.yaml --text "Der Hund schläft"
    python -m serving.predict_demo --config configs/fortunes_charlm.yaml --prompt "The meaning"
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
    PIXELS_SIGNATURE,
    TEXT_INPUT,
    image_bytes,
    predict_and_show,
)


def read_test_examples(config_path: Path, count: int
                       ) -> tuple[str, str, np.ndarray, list[str]]:
    """Return (model name, input name, the first `count` test inputs, their true classes)."""
    from pipeline.config import load_config
    from pipeline.stages.data import load_source

    run_config = load_config(config_path)
    source = load_source(run_config.data, run_config.seed)
    inputs, labels = [], []
    for value, label in source.splits["test"].examples.take(count).as_numpy_iterator():
        inputs.append(value)
        labels.append(source.class_names[int(label)])
    return run_config.name, source.input_spec.name, np.stack(inputs), labels


def generate_text(protocol: str, host: str, port: int | None, timeout: float, model: str,
                  prompt: str, length: int, temperature: float, seed: int) -> str:
    """Return `prompt` and its continuation from a served language model's `generate`."""
    from serving.client import connect

    inputs = {"prompt": np.array([prompt], dtype=object), "length": np.array([length], np.int32),
              "temperature": np.array([temperature], np.float32),
              "seed": np.array([seed], np.int64)}
    outputs = connect(protocol, host, port, timeout).predict(model, inputs,
                                                             signature_name="generate")
    text = outputs["text"][0]
    return text.decode("utf-8") if isinstance(text, bytes) else str(text)


def main(
    config: Annotated[Path, typer.Option(help="Pipeline config: the model name and the test "
                                         "split.")] = Path("configs/fashion_cnn.yaml"),
    model: str = typer.Option(None, help="Model name (default: the name in --config)."),
    image: Annotated[list[Path] | None, typer.Option(
        help="PNG/JPEG file(s), sent encoded through predict_image_bytes.")] = None,
    text: Annotated[list[str] | None, typer.Option(
        help="String(s) for a text model, sent as its `text` input.")] = None,
    prompt: Annotated[str | None, typer.Option(
        help="A language model's prompt, sent to its `generate` signature.")] = None,
    length: Annotated[int, typer.Option(help="Characters to generate after --prompt.")] = 200,
    temperature: Annotated[float, typer.Option(help="Sampling temperature for --prompt.")] = 0.8,
    seed: Annotated[int, typer.Option(help="Sampling seed for --prompt.")] = 0,
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
    """Send test examples (or image files, or text) to a served model and print its classes."""
    if prompt is not None:
        if model is None:
            from pipeline.config import load_config

            model = load_config(config).name
        from serving.client import ClientError

        try:
            typer.echo(generate_text(protocol, host, port, timeout, model, prompt, length,
                                     temperature, seed))
        except ClientError as error:
            typer.echo(f"{protocol} request failed {error.code}: {error.message}", err=True)
            raise typer.Exit(1) from None
        return
    truth = None
    if image or text:
        if model is None:
            from pipeline.config import load_config

            model = load_config(config).name
        if text:
            signature, inputs = PIXELS_SIGNATURE, {TEXT_INPUT: np.array(text, dtype=object)}
        else:
            signature, inputs = BYTES_SIGNATURE, {BYTES_INPUT: image_bytes(list(image))}
    else:
        name, input_name, values, truth = read_test_examples(config, test_images_count)
        model = model or name
        signature, inputs = PIXELS_SIGNATURE, {input_name: values}
    predict_and_show(protocol, host, port, timeout, model, lambda client: (signature, inputs),
                     label=label, top_k=top_k, truth=truth)


if __name__ == "__main__":
    typer.run(main)
