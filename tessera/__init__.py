"""The front door: the tessera console script and the local-federation launcher."""
