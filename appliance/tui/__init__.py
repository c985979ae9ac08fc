"""The cold station's Textual application: what the treasury officers see and press.

``coldstation-appliance`` with no ceremony named starts it (:func:`appliance.tui.app.run`).
The screens only display and collect; every decision is made by the ceremonies
(:mod:`appliance.appliance`) and the signing engine (:mod:`appliance.signing`, reached
through :mod:`appliance.tui.engine`), so the headless CLI and the TUI cannot disagree.
"""
