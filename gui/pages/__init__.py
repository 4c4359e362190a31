"""The app's pages, one module each, in sidebar order."""
