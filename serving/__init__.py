"""Serving: export to SavedModel, launch TF Serving (or the compatible server), clients."""
