"""NetSuite (ERP) access: REST record client (TBA or OAuth 2.0), request bodies, errors.

Nothing here runs at import time; build a :class:`NetSuiteClient` per process and reuse it. The names
below load their submodule on first use (PEP 562), so ``import r2r_core.erp.errors`` in a consumer does
not bring in the HTTP client, oauthlib, PyJWT or cryptography.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_SUBMODULE_OF = {
    "TbaCredentials": "auth",
    "credentials_from_secret_json": "auth",
    "netsuite_base_url": "auth",
    "tba_authorization": "auth",
    "RECORD_API_PATH": "client",
    "NetSuiteClient": "client",
    "write_applied": "client",
    "ErpAmbiguousWriteError": "errors",
    "ErpAuthError": "errors",
    "ErpError": "errors",
    "ErpPermanentError": "errors",
    "ErpTransientError": "errors",
    "error_from_response": "errors",
    "OAuth2Credentials": "oauth2",
    "OAuth2TokenSource": "oauth2",
    "jwt_assertion": "oauth2",
    "InvoiceLine": "records",
    "customer_body": "records",
    "external_id": "records",
    "invoice_body": "records",
    "job_body": "records",
    "time_bill_body": "records",
}


def __getattr__(name: str) -> Any:
    submodule = _SUBMODULE_OF.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{submodule}"), name)
    globals()[name] = value
    return value


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
