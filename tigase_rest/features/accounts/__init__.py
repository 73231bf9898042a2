"""Accounts, user lists, server statistics and virtual hosts through XEP-0133 admin commands."""
