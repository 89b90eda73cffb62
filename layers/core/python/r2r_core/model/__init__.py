"""The canonical model (entities, money, events)."""
