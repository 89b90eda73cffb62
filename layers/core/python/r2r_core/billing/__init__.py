"""Billing rules: pure functions, no AWS. Every decision records its rule and a reason finance understands."""
