"""Tessera protocol namespace."""
