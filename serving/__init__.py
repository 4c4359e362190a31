"""The prediction service: registered models served over HTTP with ONNX Runtime.

FastAPI, uvicorn and the service's HTTP shapes live only in this package (an import-linter
contract keeps them out of the rest); it reads the coordinator's registry through
:mod:`server.registry` and keeps its own tables (API tokens, releases) in the same
coordinator store. See docs/serving.md.
"""
