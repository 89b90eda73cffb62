"""CRM and PSA access (Salesforce REST; Certinia PSA objects live in the same org)."""

from .salesforce import (
    SalesforceClient,
    SalesforceCredentials,
    SalesforceError,
    SalesforcePermanentError,
    SalesforceTransientError,
)

__all__ = [
    "SalesforceClient",
    "SalesforceCredentials",
    "SalesforceError",
    "SalesforcePermanentError",
    "SalesforceTransientError",
]
