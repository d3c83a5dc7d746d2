"""Where a serving benchmark's results go: <output-dir>/<name>.json and <name>.md, and stdout."""

from __future__ import annotations

import json
from pathlib import Path


def write_report(output_dir: str | Path, name: str, results: dict, markdown: str) -> Path:
    """Write `results` as <name>.json and `markdown` as <name>.md; print both paths; return the folder."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (output / f"{name}.md").write_text(markdown)
    print(markdown)
    print(f"wrote {output / f'{name}.json'} and {output / f'{name}.md'}")
    return output
