"""Textual screens and widgets both programs show (the appliance and the coordinator).

UI, not core: everything here imports Textual, so the pure core (``shared.qr``,
``shared.ur`` and the rest) never imports this package (import-linter checks it,
``pyproject.toml``). They live in ``shared/`` because neither program may import the
other; only pieces with no knowledge of either program belong here.
"""
