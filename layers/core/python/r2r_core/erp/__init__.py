"""NetSuite (ERP) access: REST record client (TBA or OAuth 2.0), request bodies, errors.

Nothing here runs at import time; build a :class:`NetSuiteClient` per process and reuse it.
"""

from .auth import TbaCredentials, credentials_from_secret_json, netsuite_base_url, tba_authorization
from .client import RECORD_API_PATH, NetSuiteClient, write_applied
from .errors import (
    ErpAmbiguousWriteError,
    ErpAuthError,
    ErpError,
    ErpPermanentError,
    ErpTransientError,
    error_from_response,
)
from .oauth2 import OAuth2Credentials, OAuth2TokenSource, jwt_assertion
from .records import (
    InvoiceLine,
    customer_body,
    external_id,
    invoice_body,
    job_body,
    time_bill_body,
)

__all__ = [
    "RECORD_API_PATH",
    "ErpAmbiguousWriteError",
    "ErpAuthError",
    "ErpError",
    "ErpPermanentError",
    "ErpTransientError",
    "InvoiceLine",
    "NetSuiteClient",
    "OAuth2Credentials",
    "OAuth2TokenSource",
    "TbaCredentials",
    "credentials_from_secret_json",
    "customer_body",
    "error_from_response",
    "external_id",
    "invoice_body",
    "job_body",
    "jwt_assertion",
    "netsuite_base_url",
    "tba_authorization",
    "time_bill_body",
    "write_applied",
]
