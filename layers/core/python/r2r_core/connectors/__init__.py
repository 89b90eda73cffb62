"""Connectors: what real source systems send, mapped onto canonical events."""
