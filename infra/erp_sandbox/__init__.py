"""A NetSuite-compatible ERP sandbox for the embedded local stack and the tests.

Speaks NetSuite's REST record API on 127.0.0.1 with real Token-Based Authentication checks, keeps
records in SQLite, and injects faults on demand.

Record API (every request TBA-signed, ``realm`` = account id, HMAC-SHA256):

- ``POST   /services/rest/record/v1/<type>``                  create -> 204 + ``Location``
- ``PUT    /services/rest/record/v1/<type>/eid:<externalId>`` upsert -> 204 + ``Location``
- ``GET    /services/rest/record/v1/<type>/<id>`` or ``/eid:<externalId>`` -> 200 record
- ``PATCH  /services/rest/record/v1/<type>/<id>`` (or eid) -> 204; ``DELETE`` -> 204
- ``GET    /services/rest/record/v1/<type>?limit=&offset=`` -> NetSuite collection page

Types: customer, job, timeBill, invoice, creditMemo, expenseReport, employee (``schema.RECORD_TYPES``).

OAuth 2.0: ``POST /services/rest/auth/oauth2/v1/token`` (client credentials, JWT assertion verified with
the certificate's public key; ``ErpSandbox(..., oauth2=SandboxOAuth2Client(...))``) issues bearer tokens
the record API then accepts. Wrong credentials get NetSuite's 401 ``INVALID_LOGIN``.

Sandbox control (no auth): ``GET /_sandbox/records``, ``GET /_sandbox/stats``,
``GET|POST|DELETE /_sandbox/faults`` (format in :mod:`infra.erp_sandbox.faults`),
``POST /_sandbox/reset``, ``GET /_sandbox/health``.

Use::

    sandbox = ErpSandbox(tmp_path / "erp.sqlite")
    base_url = sandbox.start()
    client = NetSuiteClient(base_url, sandbox.tba_credentials())
"""

from .auth import SandboxCredentials, SandboxOAuth2Client
from .errors import CODE_STATUS, SandboxError
from .faults import FaultRule
from .schema import RECORD_TYPES, RecordType
from .server import RECORD_API_PATH, ErpSandbox

__all__ = [
    "CODE_STATUS",
    "RECORD_API_PATH",
    "RECORD_TYPES",
    "ErpSandbox",
    "FaultRule",
    "RecordType",
    "SandboxCredentials",
    "SandboxError",
    "SandboxOAuth2Client",
]
