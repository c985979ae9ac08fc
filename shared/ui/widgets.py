"""Textual widgets both programs' screens share (the appliance and the online coordinator).

They live in ``shared/ui`` because neither program may import the other; only widgets with
no knowledge of either program belong here.
"""

from __future__ import annotations

from textual.widgets import Footer


class KeysFooter(Footer):
    """The Footer, compact below 120 columns so every key still fits at 80x24; there the
    command palette's ``^p`` gives its room to the screen's own keys (it still works)."""

    def on_resize(self) -> None:
        narrow = self.size.width < 120
        self.compact = narrow
        self.show_command_palette = not narrow
