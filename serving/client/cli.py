"""`python -m serving.client`: send an input to a model server and print its answer.

    python -m serving.client predict --model mnist --image digit.png           # gRPC, bytes signature
    python -m serving.client predict --model mnist --protocol rest    # sample image
    python -m serving.client predict --model mnist --pixels batch.npy          # uint8 pixels
    python -m serving.client status --model mnist

It needs only the client (no pipeline, no server); `python -m serving.predict_demo` (what
`make predict-grpc` runs) reads test images with the pipeline and prints them through
`predict_and_show` here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from serving.client import ClientError, connect

HELP = """Send an input to a TF Serving (or compatible) model server; print its answer.

\b
  python -m serving.client predict --model mnist --image digit.png
  python -m serving.client predict --model mnist --protocol rest    # sample image
  python -m serving.client predict --model mnist --pixels batch.npy
  python -m serving.client status --model mnist

--image goes to the bytes signature (predict_image_bytes), --pixels to serving_default.
"""
app = typer.Typer(add_completion=False, no_args_is_help=True, help=HELP)
console = Console()
SAMPLE_IMAGE = Path(__file__).parent / "samples" / "digit_7.png"
# The exporter's signatures: encoded images, and uint8 pixels.
BYTES_SIGNATURE, BYTES_INPUT = "predict_image_bytes", "image_bytes"
PIXELS_SIGNATURE, PIXELS_INPUT = "serving_default", "image"
# The label `make serve` gives the registry's champion; a server without it answers with
# its highest version instead (a plain TF Serving config, a model never promoted).
DEFAULT_LABEL = "stable"
TEXT_INPUT = "text"  # a text model's serving_default input: one string per example


def image_bytes(paths: list[Path]) -> np.ndarray:
    """Return the files' bytes as a string batch [N], for a signature taking encoded images."""
    batch = np.empty(len(paths), dtype=object)
    batch[:] = [path.read_bytes() for path in paths]
    return batch


def _pixels(path: Path, input_shape: list[int]) -> np.ndarray:
    """Return uint8 pixels [N, H, W, C] from a .npy file or an image resized to the model's input."""
    if path.suffix == ".npy":
        pixels = np.load(path)
        return pixels[np.newaxis] if pixels.ndim == len(input_shape) - 1 else pixels
    from PIL import Image

    height, width, channels = input_shape[1:]
    image = Image.open(path).convert("L" if channels == 1 else "RGB").resize((width, height))
    return np.asarray(image, dtype=np.uint8).reshape(1, height, width, channels)


def _input_shape(client, model: str, signature: str, input_name: str) -> list[int]:
    """Return the declared shape of one signature input, e.g. [-1, 28, 28, 1]."""
    dims = client.metadata(model)[signature]["inputs"][input_name]["tensor_shape"]["dim"]
    return [int(dim["size"]) for dim in dims]


def show(outputs: dict[str, np.ndarray], top_k: int, truth: list[str] | None = None) -> None:
    """Print each example's top classes (or every output, for a model without probabilities)."""
    if "probabilities" not in outputs:
        for name, value in outputs.items():
            console.print(f"[bold]{name}[/bold] {value.dtype} {list(value.shape)}\n{value}")
        return
    probabilities = outputs["probabilities"]
    class_ids = outputs.get("class_id", probabilities.argmax(axis=-1))
    class_names = outputs.get("class_name")
    for row, scores in enumerate(probabilities):
        name = class_names[row].decode() if class_names is not None else str(class_ids[row])
        expected = f", true class {truth[row]}" if truth else ""
        table = Table(title=f"example {row}: class {name} (id {int(class_ids[row])}){expected}")
        table.add_column("class id", justify="right")
        table.add_column("probability", justify="right")
        for index in np.argsort(scores)[::-1][:top_k]:
            table.add_row(str(index), f"{scores[index]:.4f}")
        console.print(table)
    if truth and class_names is not None:
        hits = sum(class_names[row].decode() == truth[row] for row in range(len(truth)))
        console.print(f"{hits}/{len(truth)} test examples classified correctly")


def predict_and_show(protocol: str, host: str, port: int | None, timeout: float, model: str,
                     make_inputs: Callable, *, version: int | None = None, label: str | None = None,
                     top_k: int = 3, truth: list[str] | None = None) -> None:
    """Send one Predict request and print the answer; exit with status 1 if it fails.

    `make_inputs(client)` returns (signature name, {input name: array}); it gets the client
    so it can read the model's metadata first.
    """
    client = connect(protocol, host, port, timeout)
    label = None if version is not None else label
    try:
        signature, inputs = make_inputs(client)
        try:
            outputs = client.predict(model, inputs, signature_name=signature, version=version, label=label)
        except ClientError as error:
            if label != DEFAULT_LABEL or "Unrecognized servable version label" not in error.message:
                raise
            console.print(f"[yellow]{model} has no '{label}' label on this server[/yellow]: "
                          "asking for its highest version")
            outputs = client.predict(model, inputs, signature_name=signature)
    except ClientError as error:
        console.print(f"[red]{protocol} request failed[/red] {error.code}: {error.message}")
        raise typer.Exit(1) from None
    except (ConnectionError, OSError) as error:
        console.print(f"[red]cannot reach {host}:{port or ''} over {protocol}[/red]: {error}")
        raise typer.Exit(1) from None
    show(outputs, top_k, truth)


@app.command()
def predict(
    model: str = typer.Option(..., help="Model name, as in models.config."),
    image: Annotated[list[Path] | None, typer.Option(
        help="PNG/JPEG file(s), sent encoded through the bytes signature.")] = None,
    pixels: Annotated[Path | None, typer.Option(
        help=".npy uint8 array or an image, sent as pixels via serving_default.")] = None,
    protocol: str = typer.Option("grpc", help="grpc or rest."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(None, help="Defaults to 8500 (gRPC) or 8501 (REST)."),
    version: int = typer.Option(None, help="A specific version (instead of the label)."),
    label: str = typer.Option(DEFAULT_LABEL, help="A version label; 'stable' (the default) is the "
                              "registry's champion, 'canary' its challenger; without it on the "
                              "server, the highest version."),
    bytes_signature: str = typer.Option(BYTES_SIGNATURE),
    bytes_input: str = typer.Option(BYTES_INPUT),
    pixels_signature: str = typer.Option(PIXELS_SIGNATURE),
    pixels_input: str = typer.Option(PIXELS_INPUT),
    top_k: int = typer.Option(3, help="How many classes to list per example."),
    timeout: float = typer.Option(30.0, help="Seconds to wait for the answer."),
):
    """Send an image (or pixel array) and print the predicted classes and probabilities."""

    def make_inputs(client):
        if pixels is not None:
            shape = _input_shape(client, model, pixels_signature, pixels_input)
            return pixels_signature, {pixels_input: _pixels(pixels, shape)}
        return bytes_signature, {bytes_input: image_bytes(list(image) if image else [SAMPLE_IMAGE])}

    predict_and_show(protocol, host, port, timeout, model, make_inputs,
                     version=version, label=label, top_k=top_k)


@app.command()
def status(
    model: str = typer.Option(...),
    protocol: str = typer.Option("grpc"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(None),
):
    """Print every version of a model and its state."""
    client = connect(protocol, host, port)
    try:
        for version, state in client.status(model):
            console.print(f"version {version}: {state}")
    except ClientError as error:
        console.print(f"[red]{error.code}[/red]: {error.message}")
        raise typer.Exit(1) from None
