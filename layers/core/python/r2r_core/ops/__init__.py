"""Operator read and resolve logic shared by the ``r2r`` CLI and the operator API function.

Pure over the state and audit stores (``r2r_core.state``): lineage of an invoice, exceptions for finance,
the KPIs of what the StateTable holds.
"""
