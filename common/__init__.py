"""Shared foundations: study plans, the model zoo, metric maths, datasets and errors.

Imports nothing of ours."""
