"""Revisions of the site store schema, oldest first."""
