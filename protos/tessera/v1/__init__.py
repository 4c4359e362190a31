"""Tessera protocol, version 1."""
