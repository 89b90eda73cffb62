"""IAM authorization of API Gateway methods (``AuthorizationType: AWS_IAM``) on the local stack.

What API Gateway does for such a method, done locally from the template:

1. The request must be signed with Signature Version 4 for service ``execute-api`` (an ``Authorization:
   AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/execute-api/aws4_request, SignedHeaders=...,
   Signature=...`` header and ``X-Amz-Date``). No signature: 403 ``Missing Authentication Token``.
2. The access key must be known: locally a fixed set of credentials (``config.OPERATOR_CREDENTIALS``),
   each standing for a session of one operator role of the template (an ``AWS::IAM::Role`` with Metadata
   ``r2r:operator-role``). Unknown key: 403 ``UnrecognizedClientException``.
3. The signature is recomputed with botocore's SigV4 signer over the signed headers, the method, the
   path, the query and the body; a mismatch, a wrong region or service in the scope, or a timestamp more
   than 15 minutes off: 403 ``InvalidSignatureException``.
4. The role's policies (resolved from the template: the local API id and stage in the ARNs) must allow
   ``execute-api:Invoke`` on ``arn:aws:execute-api:<region>:<account>:<api id>/<stage>/<METHOD>/<path>``
   and no statement may deny it (IAM wildcards ``*`` and ``?``): else 403 ``AccessDeniedException``
   naming the caller, the action and the resource.

The authorized identity goes into the proxy event's ``requestContext.identity`` (``userArn`` =
``arn:aws:sts::<account>:assumed-role/<role name>/<session>``, ``caller``, ``accessKey``, ``accountId``), as
API Gateway passes it to the function.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SERVICE = "execute-api"
ALGORITHM = "AWS4-HMAC-SHA256"
MAX_CLOCK_SKEW = timedelta(minutes=15)
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class LocalCredential:
    access_key_id: str
    secret_access_key: str
    role: str  # the operator role label (``read-only``, ``finance-ops``, ``integration-admin``)


@dataclass
class OperatorRole:
    """An operator role of the template with its resolved policy statements."""

    label: str
    logical_id: str
    name: str
    arn: str
    statements: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Identity:
    access_key_id: str
    role: OperatorRole
    session: str

    @property
    def user_arn(self) -> str:
        account = self.role.arn.split(":")[4]
        return f"arn:aws:sts::{account}:assumed-role/{self.role.name}/{self.session}"

    @property
    def account_id(self) -> str:
        return self.role.arn.split(":")[4]


@dataclass(frozen=True)
class Denied:
    """API Gateway's answer to a request it does not let through."""

    status: int
    error_type: str
    body: dict[str, str]


def missing_token() -> Denied:
    return Denied(403, "MissingAuthenticationTokenException", {"message": "Missing Authentication Token"})


def _invalid_signature(message: str) -> Denied:
    return Denied(403, "InvalidSignatureException", {"message": message})


class IamAuthorizer:
    """Verifies SigV4 and evaluates the caller's role policy for one local API."""

    def __init__(
        self,
        credentials: Iterable[LocalCredential],
        roles: Mapping[str, OperatorRole],
        *,
        region: str,
        account_id: str,
    ) -> None:
        self.credentials = {c.access_key_id: c for c in credentials}
        self.roles = dict(roles)
        self.region = region
        self.account_id = account_id

    def method_arn(self, api_id: str, stage: str, method: str, path: str) -> str:
        return f"arn:aws:execute-api:{self.region}:{self.account_id}:{api_id}/{stage}/{method}{path}"

    def authorize(
        self,
        *,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        resource_arn: str,
        now: datetime | None = None,
    ) -> Identity | Denied:
        authorization = _header(headers, "authorization")
        if not authorization:
            return missing_token()
        parsed = _AUTHORIZATION.match(authorization.strip())
        if parsed is None:
            return Denied(
                403,
                "IncompleteSignatureException",
                {"message": f"Authorization must be {ALGORITHM} Credential=, SignedHeaders=, Signature="},
            )
        scope = parsed["credential"].split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            return _invalid_signature(
                "Credential should be <access key>/<date>/<region>/<service>/aws4_request"
            )
        access_key_id, day, region, service, _ = scope
        credential = self.credentials.get(access_key_id)
        role = self.roles.get(credential.role) if credential else None
        if credential is None or role is None:
            return Denied(
                403,
                "UnrecognizedClientException",
                {"message": "The security token included in the request is invalid."},
            )
        if region != self.region:
            return _invalid_signature(f"Credential should be scoped to a valid region, not '{region}'.")
        if service != SERVICE:
            return _invalid_signature(f"Credential should be scoped to correct service: '{SERVICE}'.")
        amz_date = _header(headers, "x-amz-date")
        signed = parsed["signed"].split(";")
        if not amz_date or "host" not in signed or "x-amz-date" not in signed:
            return _invalid_signature("'host' and 'x-amz-date' must be signed (SignedHeaders)")
        try:
            signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return _invalid_signature(f"X-Amz-Date {amz_date!r} is not yyyymmddThhmmssZ")
        if day != amz_date[:8]:
            return _invalid_signature("Date in Credential scope does not match YYYYMMDD from X-Amz-Date")
        current = now or datetime.now(UTC)
        if abs(current - signed_at) > MAX_CLOCK_SKEW:
            return _invalid_signature(
                f"Signature expired: {amz_date} is now earlier or later than 15 min of "
                f"{current.strftime('%Y%m%dT%H%M%SZ')}"
            )
        request = AWSRequest(
            method=method,
            url=url,
            data=body,
            headers={name: value for name, value in headers if name.lower() in signed},
        )
        expected = self._signature(credential, request, amz_date)
        if not hmac.compare_digest(expected, parsed["signature"]):
            return _invalid_signature(
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method."
            )
        identity = Identity(access_key_id=access_key_id, role=role, session=f"local-{access_key_id}")
        if not self.allows(role, "execute-api:Invoke", resource_arn):
            return Denied(
                403,
                "AccessDeniedException",
                {
                    "Message": f"User: {identity.user_arn} is not authorized to perform: execute-api:Invoke "
                    f"on resource: {resource_arn}"
                },
            )
        return identity

    def _signature(self, credential: LocalCredential, request: AWSRequest, amz_date: str) -> str:
        """botocore's SigV4 signature of ``request`` (holding only the headers the client signed)."""
        request.context["timestamp"] = amz_date
        signer = SigV4Auth(
            Credentials(credential.access_key_id, credential.secret_access_key), SERVICE, self.region
        )
        canonical = signer.canonical_request(request)
        return str(signer.signature(signer.string_to_sign(request, canonical), request))

    @staticmethod
    def allows(role: OperatorRole, action: str, resource: str) -> bool:
        """IAM evaluation of one identity policy set: an explicit Deny wins, then any Allow, else deny."""
        allowed = False
        for statement in role.statements:
            if not (
                _matches_any(statement.get("Action"), action)
                and _matches_any(statement.get("Resource"), resource)
            ):
                continue
            if statement.get("Condition"):
                continue  # no condition keys are evaluated locally: a conditional statement does not apply
            if statement.get("Effect") == "Deny":
                return False
            if statement.get("Effect") == "Allow":
                allowed = True
        return allowed


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in headers if key.lower() == name), None)


def _matches_any(patterns: Any, value: str) -> bool:
    listed = patterns if isinstance(patterns, list) else [patterns]
    return any(isinstance(p, str) and _wildcard(p, value) for p in listed)


def _wildcard(pattern: str, value: str) -> bool:
    """IAM matching: ``*`` any run of characters, ``?`` one character; actions case-insensitively."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    flags = re.IGNORECASE if ":" in pattern and not pattern.startswith("arn:") else 0
    return re.fullmatch(regex, value, flags) is not None
