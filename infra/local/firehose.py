"""Kinesis Data Firehose played locally: rule → delivery stream → S3, partitioned as the template says.

moto's EventBridge does not deliver to Firehose targets and moto's Firehose neither evaluates dynamic
partitioning nor applies record processors. So the local stack points each rule target that is a template
delivery stream at a *tap* queue of its own (moto filters the rule's pattern and delivers to SQS), and a
:class:`FirehoseForwarder` thread per stream reads that queue and writes S3 objects the way the stream's
``ExtendedS3DestinationConfiguration`` says:

- partition keys from the ``MetadataExtraction`` processor's JQ query (the subset this project uses: an
  object of paths, ``{type: ."detail-type", dt: .time[0:10]}``: ``.a``, ``."a-b"``, ``.a.b``, ``[n]``,
  ``[m:n]``; anything else is refused when the stack starts, naming the query);
- ``Prefix`` with ``!{partitionKeyFromQuery:<key>}``, ``!{timestamp:<Java date pattern>}`` (arrival time, UTC)
  and ``!{firehose:random-string}`` substituted; a record whose keys cannot be extracted goes under
  ``ErrorOutputPrefix`` (``!{firehose:error-output-type}`` = ``partitioning-failed``, local label) wrapped
  with its error, as Firehose does;
- ``AppendDelimiterToRecord`` (``\\n`` → newline), ``CompressionFormat`` ``GZIP`` / ``UNCOMPRESSED``,
  ``FileExtension``; object names ``<stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid><extension>``.

Buffering is not waited for: each receive of the tap queue (up to 10 events) becomes one object per
partition, so a test finds an event in S3 as soon as the stack has drained.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

LOG = logging.getLogger("r2r.local.firehose")

ERROR_OUTPUT_TYPE = "partitioning-failed"


class UnsupportedQuery(ValueError):
    """A JQ query outside the subset the local stack evaluates."""


_KEY = r"(?:[A-Za-z_][A-Za-z0-9_]*|\"[^\"]*\")"
_STEP = re.compile(r"\.(?P<name>[A-Za-z_][A-Za-z0-9_]*|\"[^\"]*\")|\[(?P<index>-?\d*)(?::(?P<end>-?\d*))?\]")
_ENTRY = re.compile(rf"^\s*(?P<key>{_KEY})\s*:\s*(?P<path>\.[^,]*?)\s*$")


@dataclass(frozen=True)
class PathQuery:
    """One ``.a."b-c"[0:10]`` path."""

    steps: tuple[tuple[str, Any], ...]

    @classmethod
    def parse(cls, text: str) -> PathQuery:
        steps: list[tuple[str, Any]] = []
        position = 0
        text = text.strip()
        while position < len(text):
            match = _STEP.match(text, position)
            if match is None:
                raise UnsupportedQuery(
                    f"cannot evaluate the JQ path {text!r} locally (at {text[position:]!r})"
                )
            if match["name"] is not None:
                steps.append(("key", match["name"].strip('"')))
            elif match["end"] is not None or ":" in match.group(0):
                start = int(match["index"]) if match["index"] else None
                end = int(match["end"]) if match["end"] else None
                steps.append(("slice", (start, end)))
            elif match["index"]:
                steps.append(("index", int(match["index"])))
            else:
                raise UnsupportedQuery(f"cannot evaluate the JQ iterator [] in {text!r} locally")
            position = match.end()
        if not steps:
            raise UnsupportedQuery(f"empty JQ path {text!r}")
        return cls(tuple(steps))

    def evaluate(self, document: Any) -> Any:
        value = document
        for kind, argument in self.steps:
            if value is None:
                return None
            if kind == "key":
                if not isinstance(value, Mapping):
                    raise TypeError(f"cannot index {type(value).__name__} with {argument!r}")
                value = value.get(argument)
            elif kind == "index":
                value = (
                    value[argument]
                    if isinstance(value, list) and -len(value) <= argument < len(value)
                    else None
                )
            else:
                if not isinstance(value, str | list):
                    raise TypeError(f"cannot slice {type(value).__name__}")
                value = value[argument[0] : argument[1]]
        return value


@dataclass(frozen=True)
class PartitionQuery:
    """A ``MetadataExtractionQuery`` of the form ``{key: path, ...}``."""

    keys: tuple[tuple[str, PathQuery], ...]

    @classmethod
    def parse(cls, text: str) -> PartitionQuery:
        body = text.strip()
        if not (body.startswith("{") and body.endswith("}")):
            raise UnsupportedQuery(
                f"the local stack evaluates object queries {{key: .path, ...}}, not {text!r}"
            )
        keys = []
        for part in body[1:-1].split(","):
            match = _ENTRY.match(part)
            if match is None:
                raise UnsupportedQuery(f"cannot evaluate {part.strip()!r} of the JQ query {text!r} locally")
            keys.append((match["key"].strip('"'), PathQuery.parse(match["path"])))
        return cls(tuple(keys))

    def evaluate(self, document: Any) -> dict[str, str]:
        """The partition keys of a record; raises ``ValueError`` when one is missing or not a scalar."""
        values: dict[str, str] = {}
        for key, path in self.keys:
            value = path.evaluate(document)
            if value is None or isinstance(value, dict | list) or value == "":
                raise ValueError(f"partition key {key!r} is missing or not a scalar")
            values[key] = str(value).lower() if isinstance(value, bool) else str(value)
        return values


@dataclass
class FirehoseSpec:
    """What the local stack needs of an ``AWS::KinesisFirehose::DeliveryStream`` (S3 destination)."""

    logical_id: str
    name: str
    arn: str
    bucket: str
    prefix: str = ""
    error_prefix: str = ""
    compression: str = "UNCOMPRESSED"
    file_extension: str = ""
    partition_query: PartitionQuery | None = None
    delimiter: str | None = None
    dynamic_partitioning: bool = False
    tap_queue_url: str | None = None
    tap_queue_name: str | None = None
    rules: list[str] = field(default_factory=list)

    @classmethod
    def from_properties(cls, logical_id: str, name: str, arn: str, props: Mapping[str, Any]) -> FirehoseSpec:
        destination = props.get("ExtendedS3DestinationConfiguration") or props.get(
            "S3DestinationConfiguration"
        )
        if not destination:
            raise UnsupportedQuery(f"delivery stream {logical_id}: only S3 destinations are played locally")
        bucket = str(destination["BucketARN"]).rsplit(":", 1)[-1]
        spec = cls(
            logical_id=logical_id,
            name=name,
            arn=arn,
            bucket=bucket,
            prefix=str(destination.get("Prefix") or ""),
            error_prefix=str(destination.get("ErrorOutputPrefix") or ""),
            compression=str(destination.get("CompressionFormat") or "UNCOMPRESSED"),
            file_extension=str(destination.get("FileExtension") or ""),
            dynamic_partitioning=bool(
                (destination.get("DynamicPartitioningConfiguration") or {}).get("Enabled")
            ),
        )
        processing = destination.get("ProcessingConfiguration") or {}
        if processing.get("Enabled", True):
            for processor in processing.get("Processors") or []:
                parameters = {
                    p["ParameterName"]: p["ParameterValue"] for p in processor.get("Parameters") or []
                }
                if processor["Type"] == "MetadataExtraction":
                    spec.partition_query = PartitionQuery.parse(parameters["MetadataExtractionQuery"])
                elif processor["Type"] == "AppendDelimiterToRecord":
                    spec.delimiter = parameters.get("Delimiter", "\\n").encode().decode("unicode_escape")
                else:
                    LOG.warning(
                        "delivery stream %s: processor %s is not applied locally",
                        logical_id,
                        processor["Type"],
                    )
        if spec.compression not in ("UNCOMPRESSED", "GZIP"):
            raise UnsupportedQuery(
                f"delivery stream {logical_id}: compression {spec.compression} is not played locally"
            )
        return spec

    # -- where a record goes --------------------------------------------------------------------

    def key_prefix(self, record: bytes, arrival: datetime) -> tuple[str, dict[str, Any] | None]:
        """(prefix, None) for a delivered record, or (error prefix, error document) when it cannot be."""
        keys: dict[str, str] = {}
        if self.dynamic_partitioning and self.partition_query is not None:
            try:
                keys = self.partition_query.evaluate(json.loads(record))
            except (ValueError, TypeError) as exc:
                error = {
                    "errorCode": "DynamicPartitioning.MetadataExtractionFailed",
                    "errorMessage": str(exc),
                    "rawData": base64.b64encode(record).decode(),
                    "attemptsMade": 1,
                    "arrivalTimestamp": int(arrival.timestamp() * 1000),
                }
                return self._expand(self.error_prefix, {}, arrival, ERROR_OUTPUT_TYPE), error
        return self._expand(self.prefix, keys, arrival, None), None

    @staticmethod
    def _expand(template: str, keys: Mapping[str, str], arrival: datetime, error_type: str | None) -> str:
        def replace(match: re.Match[str]) -> str:
            namespace, _, argument = match.group(1).partition(":")
            if namespace == "partitionKeyFromQuery":
                return keys[argument]
            if namespace == "timestamp":
                return _java_date(argument, arrival)
            if namespace == "firehose" and argument == "error-output-type" and error_type:
                return error_type
            if namespace == "firehose" and argument == "random-string":
                return uuid.uuid4().hex[:11]
            raise UnsupportedQuery(f"prefix expression !{{{match.group(1)}}} is not played locally")

        return re.sub(r"!\{([^}]*)\}", replace, template)

    def object_key(self, prefix: str, arrival: datetime) -> str:
        stamp = arrival.strftime("%Y-%m-%d-%H-%M-%S")
        return f"{prefix}{self.name}-1-{stamp}-{uuid.uuid4()}{self.file_extension}"

    def encode(self, records: list[bytes]) -> bytes:
        delimiter = (self.delimiter or "").encode()
        body = b"".join(record + delimiter for record in records)
        return gzip.compress(body) if self.compression == "GZIP" else body


_JAVA_DATE = (("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S"))


def _java_date(pattern: str, moment: datetime) -> str:
    text = pattern
    for java, python in _JAVA_DATE:
        text = text.replace(java, python)
    return moment.astimezone(UTC).strftime(text)


class FirehoseForwarder(threading.Thread):
    """Moves events from a stream's tap queue to S3 objects under their partition prefix."""

    def __init__(
        self,
        spec: FirehoseSpec,
        client: Callable[[str], Any],
        stop: threading.Event,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(name=f"firehose-{spec.name}", daemon=True)
        assert spec.tap_queue_url, spec.logical_id
        self.spec = spec
        self._client = client
        self._halt = stop
        self._clock = clock
        self._lock = threading.Lock()
        self._busy = False
        self.delivered = 0
        self.failed = 0

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._busy

    def run(self) -> None:
        sqs, s3 = self._client("sqs"), self._client("s3")
        while not self._halt.is_set():
            try:
                messages = sqs.receive_message(
                    QueueUrl=self.spec.tap_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                ).get("Messages", [])
            except Exception:  # moto stopping, or a transient local error
                if self._halt.is_set():
                    return
                LOG.exception("firehose %s: receive failed", self.spec.name)
                self._halt.wait(0.5)
                continue
            if not messages:
                continue
            with self._lock:
                self._busy = True
            try:
                self.deliver(s3, [m["Body"].encode() for m in messages])
                sqs.delete_message_batch(
                    QueueUrl=self.spec.tap_queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
                    ],
                )
            except Exception:
                if self._halt.is_set():
                    return
                LOG.exception("firehose %s: delivery failed (messages stay on the tap queue)", self.spec.name)
            finally:
                with self._lock:
                    self._busy = False

    def deliver(self, s3: Any, records: list[bytes]) -> list[str]:
        """Write ``records`` as Firehose would (one object per partition); returns the object keys."""
        arrival = self._clock()
        groups: dict[str, list[bytes]] = {}
        for record in records:
            prefix, error = self.spec.key_prefix(record, arrival)
            groups.setdefault(prefix, []).append(json.dumps(error).encode() if error else record)
            if error:
                self.failed += 1
            else:
                self.delivered += 1
        keys = []
        for prefix, group in groups.items():
            key = self.spec.object_key(prefix, arrival)
            s3.put_object(Bucket=self.spec.bucket, Key=key, Body=self.spec.encode(group))
            keys.append(key)
        return keys
