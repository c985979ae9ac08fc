"""Realistic and adversarial inputs shared by the review, signing and TUI tests."""
