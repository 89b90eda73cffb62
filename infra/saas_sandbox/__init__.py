"""SaaS sandboxes for the local stack and tests: a Salesforce REST stand-in (CRM + Certinia PSA objects)."""

from .salesforce import SalesforceSandbox

__all__ = ["SalesforceSandbox"]
