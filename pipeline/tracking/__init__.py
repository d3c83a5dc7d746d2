"""MLflow tracking: the only package that imports mlflow.

`Tracker` opens runs in one experiment of one tracking store (tracker.py) and reaches its
model registry (registry.py); `Run` logs to one run (run.py); store.py says where the store
is and what every run is tagged with; review.py reads runs back for the MLflow UI. The
tracking URI is always an argument, so tests use a temp dir.
"""

from pipeline.tracking.review import ui_links
from pipeline.tracking.run import MetricsCallback, Run
from pipeline.tracking.store import (
    EXPERIMENT_KIND,
    NOTE_TAG,
    PARENT_TAG,
    RESUMABLE_TAG,
    scratch_dir,
)
from pipeline.tracking.tracker import Tracker

__all__ = [
    "EXPERIMENT_KIND", "NOTE_TAG", "PARENT_TAG", "RESUMABLE_TAG", "MetricsCallback", "Run",
    "Tracker", "scratch_dir", "ui_links",
]
