"""Constants of the embedded local stack: region, account, dummy credentials and local secrets.

Everything here is deliberately constant and public: it only ever protects resources that
live in a moto server bound to 127.0.0.1 for the lifetime of one process. The values are
documented in ``docs/local-stack.md`` so a developer can sign a webhook by hand.
"""

from __future__ import annotations

import json
from typing import Final

REGION: Final = "us-east-1"
ACCOUNT_ID: Final = "123456789012"  # moto's default account
PARTITION: Final = "aws"
URL_SUFFIX: Final = "amazonaws.com"

# Dummy credentials: moto accepts anything, and real AWS must never be reachable from a local run.
ACCESS_KEY_ID: Final = "testing"
SECRET_ACCESS_KEY: Final = "testing"  # noqa: S105 - not a secret, moto ignores it

HOST: Final = "127.0.0.1"

# Standard Webhooks signing secrets per source (``whsec_`` + base64 of the raw key). The raw keys
# are ``r2r-local-<source>-webhook-key-0001``.
WEBHOOK_SECRETS: Final[dict[str, str]] = {
    "crm": "whsec_cjJyLWxvY2FsLWNybS13ZWJob29rLWtleS0wMDAx",
    "psa": "whsec_cjJyLWxvY2FsLXBzYS13ZWJob29rLWtleS0wMDAx",
    "hris": "whsec_cjJyLWxvY2FsLWhyaXMtd2ViaG9vay1rZXktMDAwMQ==",
    "generic": "whsec_cjJyLWxvY2FsLWdlbmVyaWMtd2ViaG9vay1rZXktMDAwMQ==",
}

# NetSuite Token-Based Authentication material for the local ERP sandbox. The sandbox is started
# with exactly these values (see ``infra.local.stack``), so the functions authenticate against it
# the way they would against a real account.
ERP_CREDENTIALS: Final[dict[str, str]] = {
    "account_id": "1234567_SB1",
    "auth": "tba",
    "consumer_key": "r2r-local-consumer-key",
    "consumer_secret": "r2r-local-consumer-secret",
    "token_id": "r2r-local-token-id",
    "token_secret": "r2r-local-token-secret",
}

# OAuth client credentials for the local Salesforce sandbox (CRM / PSA write-backs); the sandbox is
# started with exactly these.
SALESFORCE_CREDENTIALS: Final[dict[str, str]] = {
    "client_id": "r2r-local-sf-client",
    "client_secret": "r2r-local-sf-secret",
    "api_version": "v61.0",
}

# The API token of the local Kantata OX sandbox (the poller's bearer token); the sandbox is started with it.
KANTATA_CREDENTIALS: Final[dict[str, str]] = {"api_token": "r2r-local-kantata-token"}

# Salesforce Outbound Message listener secrets per organisation (the secret is the last segment of
# the endpoint URL: POST <api>/v1/salesforce/outbound/r2r-local-sf-outbound-0001).
SALESFORCE_OUTBOUND_ORG_ID: Final = "00D5g000004XyZaEAK"
SALESFORCE_OUTBOUND_SECRET: Final = "r2r-local-sf-outbound-0001"  # noqa: S105 - a local constant
SALESFORCE_OUTBOUND_SECRETS: Final[dict[str, list[str]]] = {
    SALESFORCE_OUTBOUND_ORG_ID: [SALESFORCE_OUTBOUND_SECRET]
}

# Operator API (IAM-authorized methods): one access key per operator role of the template (Metadata
# ``r2r:operator-role``). A request signed (SigV4, service execute-api, this region) with one of these acts as
# a session of that role; the local API evaluates the role's policy from the template (infra.local.iam_auth).
OPERATOR_CREDENTIALS: Final[dict[str, dict[str, str]]] = {
    "read-only": {
        "access_key_id": "AKIAR2RLOCALREADONLY",
        "secret_access_key": "r2r-local-read-only-secret-0001",
    },
    "finance-ops": {
        "access_key_id": "AKIAR2RLOCALFINANCE1",
        "secret_access_key": "r2r-local-finance-ops-secret-0001",
    },
    "integration-admin": {
        "access_key_id": "AKIAR2RLOCALINTADMIN",
        "secret_access_key": "r2r-local-integration-admin-secret-0001",
    },
}

# Lambda defaults when the template leaves them out (AWS's own defaults).
DEFAULT_TIMEOUT_S: Final = 3
DEFAULT_MEMORY_MB: Final = 128

# Local SQS retry: a failed message becomes visible again after this many seconds (AWS would wait
# for the whole visibility timeout; locally that would only make scenarios slow).
RETRY_DELAY_S: Final = 1

# Long-poll wait of the pollers' ReceiveMessage (SQS allows up to 20 s).
POLL_WAIT_S: Final = 10

# Upper bound of concurrent workers per event source mapping (ScalingConfig.MaximumConcurrency).
MAX_WORKERS_PER_MAPPING: Final = 4
DEFAULT_WORKERS_PER_MAPPING: Final = 2

# API Gateway's payload limit.
MAX_API_PAYLOAD_BYTES: Final = 10 * 1024 * 1024


def webhook_secrets_json() -> str:
    """Value of the ``WebhookSecrets`` secret: ``{"<source>": ["whsec_…"]}`` (a list allows rotation)."""
    return json.dumps({source: [secret] for source, secret in WEBHOOK_SECRETS.items()})


def erp_credentials_json() -> str:
    """Value of the ``ErpCredentials`` secret."""
    return json.dumps(ERP_CREDENTIALS)
