"""SaaS sandboxes for the local stack and tests: a Salesforce REST stand-in (CRM + Certinia PSA objects)
and a Kantata OX REST stand-in (the poller's API)."""

from .kantata import KantataSandbox
from .salesforce import SalesforceSandbox

__all__ = ["KantataSandbox", "SalesforceSandbox"]
