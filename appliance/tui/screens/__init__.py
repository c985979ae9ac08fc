"""One module per screen; :mod:`.common` holds what they share (formatting, navigation,
blocking work off the UI thread, the officers' PIN dialog)."""
