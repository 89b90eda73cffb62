"""Domain errors. Their class names are part of the contract: Step Functions matches on them.

``Permanent`` errors will not go away by retrying: they become an exception record for
finance (with the business context) and the message or execution is left failed so an
operator can redrive it once the cause is fixed. ``Retryable`` ones are retried.
"""

from __future__ import annotations


class R2RError(Exception):
    """Base of r2r's domain errors."""


class Retryable(R2RError):
    """Worth retrying: the cause is expected to go away (ordering, throttling)."""


class TailNotWritten(Retryable):
    """What ends a record's processing (its events, its audit record) could not be written after its batch."""


class Permanent(R2RError):
    """Retrying will not help until someone changes data or configuration."""


class EngagementNotReady(Retryable):
    """Work arrived for an engagement that is not set up yet (events can arrive out of order)."""


class ContractInvalid(Permanent):
    """The contract terms do not allow the requested billing."""


class NoBillableWork(Permanent):
    """An invoice run found nothing to bill."""


class TaxConfigurationMissing(Permanent):
    """The legal entity or tax registration needed to invoice is missing."""


class BillingRuleError(Permanent):
    """A billing rule could not be applied (for example no rate in force for a role)."""


class StaleUpdate(R2RError):
    """An update older than what r2r already holds; ignored, with an audit record."""


class ChangedAfterInvoicing(Permanent):
    """An approved record changed after it was invoiced; needs an adjustment, never a silent re-bill."""
