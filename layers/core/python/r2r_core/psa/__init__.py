"""Clients of the PSA systems r2r reads by API (Kantata OX)."""
