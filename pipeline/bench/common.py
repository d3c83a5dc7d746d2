# Owns what every benchmark shares: reading its --set overrides and writing its results.
"""What each `python -m pipeline.bench.<name>` shares: `--set` items and JSON + Markdown output.

Light on purpose (no TensorFlow at import), so that a benchmark's `--help` stays quick.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def overrides(set_items: list[str] | None) -> dict[str, Any]:
    """Return the `--set key=value` items as config overrides."""
    from pipeline.config import parse_override

    return dict(parse_override(item) for item in set_items or [])


def write_results(output_dir: Path, name: str, result: dict, markdown: str) -> Path:
    """Write `result` to <output_dir>/<name>.json and `markdown` to <name>.md, print the
    Markdown; return its path."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    path = output_dir / f"{name}.md"
    path.write_text(markdown)
    print(markdown.rstrip("\n"))
    return path
