"""``tessera site ...``: the site operator's commands. Wiring only: one module per command
group, shared options in :mod:`client_app.cli.options`, errors turned into exit statuses by
the one CLI boundary."""
