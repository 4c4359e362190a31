"""The front door: the tessera console script and the local-federation launcher.

``__version__`` is the one home of Tessera's version: the package metadata reads it at build
time (``[tool.setuptools.dynamic]`` in pyproject) and ``tessera --version`` prints it.
"""

__version__ = "0.1.0"
