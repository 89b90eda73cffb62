"""``r2r dlq list | show <queue> | redrive <queue>``: the dead-letter queues of a deployment.

A DLQ is a queue some other queue names as ``deadLetterTargetArn`` in its ``RedrivePolicy`` (its source);
``ListDeadLetterSourceQueues`` and the DLQ's ``RedriveAllowPolicy`` are asked too. ``<queue>`` is the DLQ's
name, or any unique part of it ignoring case, ``-`` and ``_`` (``time_posting`` finds
``r2r-dev-TimePostingDlq…``).

Redrive: on AWS an SQS message move task (``StartMessageMoveTask``, source = the DLQ, destination = its
source queue), reported with ``ListMessageMoveTasks``. The local stack's moto has no move tasks, so there
the messages are moved here: received in batches of 10, sent to the source queue with the same body and
message attributes, then deleted from the DLQ; at most ``--max-messages``.
Either way every message gets a new message id: consumers are idempotent on business ids, not on it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import typer

from infra.ops_target import Target, with_target

app = typer.Typer(help="Dead-letter queues: list, inspect, redrive.", no_args_is_help=True)

_DEPTH_KEYS = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)
_BATCH = 10


@dataclass(frozen=True)
class Dlq:
    name: str
    url: str
    arn: str
    depth: int
    sources: tuple[str, ...]  # source queue ARNs

    @property
    def source_names(self) -> list[str]:
        return [arn.rsplit(":", 1)[-1] for arn in self.sources]


def _norm(text: str) -> str:
    return text.lower().replace("-", "").replace("_", "")


def _queue_urls(sqs: Any, prefix: str | None) -> list[str]:
    urls: list[str] = []
    kwargs: dict[str, Any] = {"QueueNamePrefix": prefix} if prefix else {}
    while True:
        page = sqs.list_queues(**kwargs)
        urls.extend(page.get("QueueUrls", []))
        if not page.get("NextToken"):
            return urls
        kwargs["NextToken"] = page["NextToken"]


def find_dlqs(sqs: Any, prefix: str | None = None) -> list[Dlq]:
    """Every DLQ among the queues whose name starts with ``prefix``, with its depth and source queues."""
    attributes = {
        url: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        for url in _queue_urls(sqs, prefix)
    }
    sources: dict[str, set[str]] = {}
    for attrs in attributes.values():
        policy = json.loads(attrs.get("RedrivePolicy") or "{}")
        if policy.get("deadLetterTargetArn"):
            sources.setdefault(policy["deadLetterTargetArn"], set()).add(attrs["QueueArn"])
    dlqs: list[Dlq] = []
    for url, attrs in attributes.items():
        arn = attrs["QueueArn"]
        allow = json.loads(attrs.get("RedriveAllowPolicy") or "{}")
        if arn not in sources and allow.get("redrivePermission") != "byQueue":
            continue
        found = set(sources.get(arn, set())) | set(allow.get("sourceQueueArns") or [])
        dlqs.append(
            Dlq(
                name=arn.rsplit(":", 1)[-1],
                url=url,
                arn=arn,
                depth=sum(int(attrs.get(key, 0)) for key in _DEPTH_KEYS),
                sources=tuple(sorted(found)),
            )
        )
    return sorted(dlqs, key=lambda d: d.name)


def pick(dlqs: list[Dlq], queue: str) -> Dlq:
    exact = [d for d in dlqs if queue in {d.name, d.url, d.arn}]
    matches = exact or [d for d in dlqs if _norm(queue) in _norm(d.name)]
    if len(matches) != 1:
        names = ", ".join(d.name for d in (matches or dlqs))
        raise typer.BadParameter(f"{queue!r} names {len(matches)} DLQs; choose one of: {names}")
    return matches[0]


def peek(sqs: Any, url: str, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` messages, left visible (visibility timeout 0); receive counts go up by one."""
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(max(1, limit // _BATCH) + 2):
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(_BATCH, limit),
            VisibilityTimeout=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            seen.setdefault(message["MessageId"], message)
        if len(seen) >= limit:
            break
    return sorted(seen.values(), key=lambda m: int(m.get("Attributes", {}).get("SentTimestamp", 0)))[:limit]


def _age(message: dict[str, Any], now_ms: int) -> float:
    return (now_ms - int(message.get("Attributes", {}).get("SentTimestamp", now_ms))) / 1000


def _human(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def summarize(message: dict[str, Any]) -> dict[str, Any]:
    """The business summary of a DLQ message (an EventBridge event whose detail is our envelope)."""
    attrs = message.get("Attributes", {})
    summary: dict[str, Any] = {
        "message_id": message["MessageId"],
        "receive_count": int(attrs.get("ApproximateReceiveCount", 0)),
        "sent_at": datetime.fromtimestamp(int(attrs.get("SentTimestamp", 0)) / 1000, UTC).isoformat(),
    }
    try:
        event = json.loads(message["Body"])
    except ValueError:
        return summary | {"event_type": None, "note": "body is not JSON"}
    detail = event.get("detail", event) if isinstance(event, dict) else {}
    if not isinstance(detail, dict):
        detail = {}
    data = detail.get("data") if isinstance(detail.get("data"), dict) else {}
    assert isinstance(data, dict)
    return summary | {
        "event_type": detail.get("type") or event.get("detail-type"),
        "source_system": detail.get("source_system"),
        "source_record_id": detail.get("source_record_id"),
        "source_record_version": detail.get("source_record_version"),
        "correlation_id": detail.get("correlation_id"),
        "event_id": detail.get("event_id") or event.get("id"),
        "engagement_id": data.get("engagement_id") or (data.get("engagement") or {}).get("id"),
    }


def move_messages(sqs: Any, dlq_url: str, destination_url: str, max_messages: int) -> int:
    """Move up to ``max_messages`` from the DLQ to ``destination_url`` (same body and attributes)."""
    moved = 0
    while moved < max_messages:
        messages = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=min(_BATCH, max_messages - moved),
            VisibilityTimeout=60,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        entries = []
        for index, message in enumerate(messages):
            entry: dict[str, Any] = {"Id": str(index), "MessageBody": message["Body"]}
            if message.get("MessageAttributes"):
                entry["MessageAttributes"] = message["MessageAttributes"]
            entries.append(entry)
        sent = sqs.send_message_batch(QueueUrl=destination_url, Entries=entries)
        ok = {entry["Id"] for entry in sent.get("Successful", [])}
        done = [
            {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
            for index, message in enumerate(messages)
            if str(index) in ok
        ]
        if done:
            sqs.delete_message_batch(QueueUrl=dlq_url, Entries=done)
        moved += len(done)
        if sent.get("Failed"):
            raise RuntimeError(f"{len(sent['Failed'])} message(s) could not be sent: {sent['Failed']}")
    return moved


def start_move_task(
    sqs: Any, dlq: Dlq, destination_arn: str | None, max_per_second: int | None = None
) -> dict[str, Any]:
    """AWS: start a message move task from the DLQ (to ``destination_arn``, or each message's source)."""
    kwargs: dict[str, Any] = {"SourceArn": dlq.arn}
    if destination_arn:
        kwargs["DestinationArn"] = destination_arn
    if max_per_second:
        kwargs["MaxNumberOfMessagesPerSecond"] = max_per_second
    handle = sqs.start_message_move_task(**kwargs)["TaskHandle"]
    tasks = sqs.list_message_move_tasks(SourceArn=dlq.arn, MaxResults=1).get("Results", [])
    return {"task_handle": handle, **(tasks[0] if tasks else {})}


@app.command("list")
@with_target
def list_(
    *,
    target: Target,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Every DLQ with its depth, the age of its oldest message and its source queue."""
    sqs = target.client("sqs")
    now_ms = int(time.time() * 1000)
    rows: list[dict[str, Any]] = []
    for dlq in find_dlqs(sqs, target.queue_prefix):
        oldest = max((_age(m, now_ms) for m in peek(sqs, dlq.url, 10)), default=None) if dlq.depth else None
        rows.append({"dlq": dlq.name, "depth": dlq.depth, "oldest_s": oldest, "source": dlq.source_names})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'DLQ':<60} {'depth':>5}  {'oldest':>8}  source")
    for row in rows:
        oldest_text = _human(row["oldest_s"]) if row["oldest_s"] is not None else "-"
        typer.echo(f"{row['dlq']:<60} {row['depth']:>5}  {oldest_text:>8}  {', '.join(row['source']) or '?'}")


@app.command()
@with_target
def show(
    queue: str = typer.Argument(..., help="The DLQ (name or a unique part of it)."),
    *,
    limit: int = typer.Option(10, help="At most this many messages."),
    raw: bool = typer.Option(False, "--raw", help="Print whole message bodies too."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    target: Target,
) -> None:
    """The messages of a DLQ: event type, source record id/version, correlation id, receive count."""
    sqs = target.client("sqs")
    dlq = pick(find_dlqs(sqs, target.queue_prefix), queue)
    messages = peek(sqs, dlq.url, limit)
    rows = [summarize(m) | ({"body": m["Body"]} if raw else {}) for m in messages]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{dlq.name}: {dlq.depth} message(s), source {', '.join(dlq.source_names) or '?'}")
    for row in rows:
        typer.echo(
            f"  {row['event_type']}  {row.get('source_system')}:{row.get('source_record_id')}"
            f" v{row.get('source_record_version')}  correlation {row.get('correlation_id')}"
            f"  received {row['receive_count']}x  sent {row['sent_at']}"
        )
        if raw:
            typer.echo(f"    {row['body']}")


@app.command()
@with_target
def redrive(
    queue: str = typer.Argument(..., help="The DLQ (name or a unique part of it)."),
    *,
    max_messages: int = typer.Option(1000, help="Local: move at most this many messages."),
    max_per_second: int | None = typer.Option(None, help="AWS: MaxNumberOfMessagesPerSecond of the task."),
    target: Target,
) -> None:
    """Move the DLQ's messages back to its source queue, to be processed again."""
    sqs = target.client("sqs")
    dlq = pick(find_dlqs(sqs, target.queue_prefix), queue)
    if len(dlq.sources) > 1:
        raise typer.BadParameter(f"{dlq.name} has several source queues: {dlq.source_names}")
    destination = dlq.sources[0] if dlq.sources else None
    if target.local:
        if destination is None:
            raise typer.BadParameter(f"{dlq.name}: no source queue found")
        destination_url = sqs.get_queue_url(QueueName=destination.rsplit(":", 1)[-1])["QueueUrl"]
        moved = move_messages(sqs, dlq.url, destination_url, max_messages)
        typer.echo(f"moved {moved} message(s) from {dlq.name} to {destination.rsplit(':', 1)[-1]}")
        return
    task = start_move_task(sqs, dlq, destination, max_per_second)
    typer.echo(
        f"message move task started from {dlq.name} to {destination or 'each message source'}: "
        f"handle {task['task_handle']}, status {task.get('Status', '?')}, "
        f"{task.get('ApproximateNumberOfMessagesMoved', 0)}/"
        f"{task.get('ApproximateNumberOfMessagesToMove', '?')} moved"
    )
