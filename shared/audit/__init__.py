"""Audit replay: re-verify ceremonies offline from signatures and hashes alone."""
