"""End-to-end scenarios: the real programs driven through their command lines."""
