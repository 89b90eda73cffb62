"""Business flows: each takes a canonical event and its ports (store, ERP, bus), no Lambda specifics."""
