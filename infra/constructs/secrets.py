"""Secrets the operator fills in: webhook signing secrets and ERP credentials.

The stack only creates them with a harmless JSON skeleton; the real values are set by
the operator (console / CLI) and never pass through the template.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.constructs import nag
from infra.constructs.encryption import DataKey

# A generated filler key is how CloudFormation creates a JSON secret without a literal value
# in the template; consumers ignore keys that start with "_".
PLACEHOLDER_KEY = "_placeholder"
# Skeletons only (no secret material): the operator replaces the whole value.
WEBHOOK_SECRETS_SKELETON = '{"generic": []}'
ERP_CREDENTIALS_SKELETON = '{"account_id": ""}'
SALESFORCE_CREDENTIALS_SKELETON = '{"client_id": ""}'
KANTATA_CREDENTIALS_SKELETON = '{"api_token": ""}'
_NO_ROTATION = (
    "Third-party credentials: they are issued by the source system (webhook signing secrets, "
    "NetSuite TBA/OAuth material) and rotated there by the operator, who then updates this "
    "secret; a Lambda rotation function cannot rotate them."
)


class IntegrationSecrets(Construct):
    """``WebhookSecrets`` (``{"<source>": ["whsec_...", ...]}``), ``ErpCredentials`` and
    ``SalesforceCredentials`` (connected app client credentials for CRM/PSA write-backs) and
    ``KantataCredentials`` (``{"api_token"}``: the bearer token the Kantata OX poller reads with)."""

    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        # grant_read adds kms:Decrypt on this key, only via Secrets Manager (kms:ViaService).
        key = DataKey.of(self)
        self.webhook_secrets = secretsmanager.Secret(
            self,
            "WebhookSecrets",
            description='r2r webhook signing secrets per source: {"<source>": ["whsec_...", ...]}',
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=WEBHOOK_SECRETS_SKELETON,
                generate_string_key=PLACEHOLDER_KEY,
            ),
            removal_policy=removal_policy,
            encryption_key=key,
        )
        self.erp_credentials = secretsmanager.Secret(
            self,
            "ErpCredentials",
            description="r2r NetSuite credentials: account_id and TBA or OAuth 2.0 material",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=ERP_CREDENTIALS_SKELETON,
                generate_string_key=PLACEHOLDER_KEY,
            ),
            removal_policy=removal_policy,
            encryption_key=key,
        )
        self.salesforce_credentials = secretsmanager.Secret(
            self,
            "SalesforceCredentials",
            description='r2r Salesforce connected app: {"client_id", "client_secret", "api_version"}',
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=SALESFORCE_CREDENTIALS_SKELETON,
                generate_string_key=PLACEHOLDER_KEY,
            ),
            removal_policy=removal_policy,
            encryption_key=key,
        )
        self.kantata_credentials = secretsmanager.Secret(
            self,
            "KantataCredentials",
            description='r2r Kantata OX API token for the poller: {"api_token": "..."}',
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=KANTATA_CREDENTIALS_SKELETON,
                generate_string_key=PLACEHOLDER_KEY,
            ),
            encryption_key=key,
            removal_policy=removal_policy,
        )
        for secret in (
            self.webhook_secrets,
            self.erp_credentials,
            self.salesforce_credentials,
            self.kantata_credentials,
        ):
            nag.acknowledge(secret, "SMG4", _NO_ROTATION)
