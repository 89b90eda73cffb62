"""The webhook intake: REST API ``POST /v1/webhooks/{source}`` proxied to ingest_webhook."""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constructs import nag
from infra.constructs.encryption import DataKey

ACCESS_LOG_RETENTION = logs.RetentionDays.THREE_MONTHS
WEBHOOK_BASE_PATH = "/v1/webhooks"

_F = apigw.AccessLogField
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": _F.context_request_id(),
        "extendedRequestId": _F.context_extended_request_id(),
        "requestTime": _F.context_request_time(),
        "ip": _F.context_identity_source_ip(),
        "userAgent": _F.context_identity_user_agent(),
        "httpMethod": _F.context_http_method(),
        "resourcePath": _F.context_resource_path(),
        "path": _F.context_path(),
        "protocol": _F.context_protocol(),
        "status": _F.context_status(),
        "responseLength": _F.context_response_length(),
        "responseLatency": _F.context_response_latency(),
        "integrationStatus": _F.context_integration_status(),
        "integrationLatency": _F.context_integration_latency(),
        "integrationErrorMessage": _F.context_integration_error_message(),
        "errorMessage": _F.context_error_message(),
        "errorResponseType": _F.context_error_response_type(),
        "validationError": _F.context_error_validation_error_string(),
        "xrayTraceId": _F.context_xray_trace_id(),
    }
)

_HMAC_AUTH = (
    "Webhook senders (SaaS systems) cannot use IAM or Cognito: every request is authenticated "
    "by the HMAC signature the ingest_webhook function verifies against WebhookSecrets "
    "(401 when it is missing or wrong); stage throttling caps unauthenticated traffic."
)


class WebhookApi(Construct):
    """Regional REST API with throttling, JSON access logs, X-Ray and path-parameter validation."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: lambda_.IFunction,
        stage_name: str,
        rate_limit: int,
        burst_limit: int,
        log_removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=ACCESS_LOG_RETENTION,
            removal_policy=log_removal_policy,
            encryption_key=DataKey.of(self),
        )
        self.api = apigw.RestApi(
            self,
            "WebhookApi",
            description="r2r webhook intake (HMAC-signed SaaS webhooks)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=False,
            deploy_options=apigw.StageOptions(
                stage_name=stage_name,
                throttling_rate_limit=rate_limit,
                throttling_burst_limit=burst_limit,
                tracing_enabled=True,
                metrics_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.custom(ACCESS_LOG_FORMAT),
            ),
        )
        # The stack publishes its own ApiUrl output; drop the RestApi's generated one.
        self.api.node.try_remove_child("Endpoint")

        # validate_request_body is on for cdk-nag APIG2; the method declares no request model,
        # so API Gateway does not look at the body (the function validates it after the signature).
        self.validator = self.api.add_request_validator(
            "RequestValidator",
            validate_request_parameters=True,
            validate_request_body=True,
        )
        source = self.api.root.add_resource("v1").add_resource("webhooks").add_resource("{source}")
        self.method = source.add_method(
            "POST",
            apigw.LambdaIntegration(handler, proxy=True, allow_test_invoke=False),
            authorization_type=apigw.AuthorizationType.NONE,
            request_validator=self.validator,
            # Only the path parameter is required: a request without a signature header must
            # reach the function, which answers 401 (not a validator 400).
            request_parameters={"method.request.path.source": True},
        )
        nag.acknowledge(self.method, "APIG4", _HMAC_AUTH)
        nag.acknowledge(self.method, "COG4", _HMAC_AUTH)

        stage = self.api.deployment_stage
        nag.acknowledge(
            stage,
            "APIG3",
            "No WAF web ACL is attached by this stack: callers are a handful of SaaS webhook senders "
            "authenticated by HMAC and the stage is throttled; an account-level WAF policy "
            "(Firewall Manager) can be associated by the operator without a template change.",
        )
        nag.acknowledge(
            stage,
            "APIG6",
            "JSON access logs (request id, status, latency, integration and validation errors) "
            "go to an explicit log group; execution logging needs the account-wide API Gateway "
            "CloudWatch role (AWS::ApiGateway::Account), which one stage's stack must not own.",
        )

    @property
    def webhook_base_url(self) -> str:
        """``https://<api>.execute-api.<region>.<suffix>/<stage>/v1/webhooks``."""
        return self.api.url_for_path(WEBHOOK_BASE_PATH)
