"""The PySide6 site-operator desktop app (pages, Qt models, workers)."""
