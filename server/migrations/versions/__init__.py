"""Revisions of the coordinator store schema, oldest first."""
