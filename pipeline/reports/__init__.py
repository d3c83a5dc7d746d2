"""Figures and diagnostics logged to MLflow: learning curves, confusion matrix and sweep
plots (`plots`); gradient flow, representations and activations (`insights`)."""
