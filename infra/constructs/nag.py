"""cdk-nag acknowledgments, always on one resource and always with a written reason.

cdk-nag 3 reads acknowledgments recorded with ``Validations.of(construct).acknowledge``;
an acknowledgment on a construct covers that construct and its children, so this helper
refuses stacks, stages and apps: nothing here is suppressed stack-wide.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Acknowledgment, Stack, Stage, Validations
from constructs import IConstruct

PACK = "AwsSolutions"
MIN_REASON_LENGTH = 10


def acknowledge(
    construct: IConstruct,
    rule: str,
    reason: str,
    *,
    findings: Iterable[str] = (),
) -> None:
    """Acknowledge ``AwsSolutions-<rule>`` (or each ``<rule>[<finding>]``) on ``construct``.

    ``findings`` are the rule's finding ids, for example ``"Resource::*"`` for IAM5:
    each wildcard is acknowledged by name, never the whole rule.
    """
    if Stack.is_stack(construct) or Stage.is_stage(construct):
        raise ValueError(f"refusing a stack-wide acknowledgment of {rule} on {construct.node.path}")
    if len(reason.strip()) < MIN_REASON_LENGTH:
        raise ValueError(f"acknowledgment of {rule} on {construct.node.path} needs a real reason")
    names = [f"{PACK}-{rule}[{finding}]" for finding in findings] or [f"{PACK}-{rule}"]
    Validations.of(construct).acknowledge(*(Acknowledgment(id=name, reason=reason) for name in names))
