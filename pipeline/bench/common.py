# Owns what every benchmark shares: reading its --set overrides (results: serving.common.write_report).
"""What each `python -m pipeline.bench.<name>` shares: `--set` items (JSON + Markdown output is
`serving.common.write_report`, shared with the serving benchmarks).

Light on purpose (no TensorFlow at import), so that a benchmark's `--help` stays quick.
"""

from __future__ import annotations

from typing import Any


def overrides(set_items: list[str] | None) -> dict[str, Any]:
    """Return the `--set key=value` items as config overrides."""
    from pipeline.config import parse_override

    return dict(parse_override(item) for item in set_items or [])
