"""Linear-time SQS and DynamoDB queries in moto's server: what a month-end spike needs of the local stack.

moto's SQS (5.2) does per-request work proportional to everything in a queue: every ``ReceiveMessage``
lists all visible messages and, for each message it returns, recomputes *all* the queue's attributes
(three passes over the queue) only to read its retention period; every ``DeleteMessage`` scans the queue
comparing receipt-handle lists; each visibility test reads the clock through ``datetime``. Its DynamoDB
``Query`` on a table's key lists and *sorts every item of the table* to keep one partition's. With 50,000
messages waiting and a table growing by a few items per entry that is quadratic: moto, not r2r, is then
what a benchmark measures.

:func:`apply` (called by :mod:`infra.local.moto_process` before the server starts) replaces those pieces
with equivalents that do the same thing in time proportional to the work asked for:

- the clock: ``time.time()`` (what ``moto.core.utils.unix_time`` computes through ``datetime``);
- ``Queue.messages``: the visible messages found as ``ReceiveMessage`` iterates them, so a receive looks at
  the few messages it returns (and those in flight before them), not at the whole queue; the approximate
  counts: one clock reading per pass instead of two per message;
- the retention check of a received message: the queue's ``message_retention_period`` attribute directly;
- ``Queue.delete_message``: the message found through an index of every receipt handle it was given
  (old ones too, as moto accepts them), instead of a scan comparing handle lists; an unknown handle falls
  back to moto's own code, which raises ``ReceiptHandleIsInvalid`` as before;
- the server's routing of a request to its service: moto lists its package directory on disk (``listdir``
  and ``isdir`` of some 200 folders) and tries a few hundred URL patterns for every request; the folder
  list and each host's answer are computed once;
- a DynamoDB ``Query`` on the table's own key (not an index): moto's code, handed only the queried
  partition's items where it asks for all of them (moto then keeps the same items and sorts them the same);
- a DynamoDB ``Scan`` page (on the table, not an index; a segment of a parallel scan too): moto sorts the
  whole table comparing keys as DynamoType objects, and then compares every item before the page's start
  key with it, one by one, to skip the pages already read, so reading a table of n items in 1 MB pages
  costs n times the number of pages. moto's code is handed the items sorted by their keys' values (cast
  once per item) and, after the first page, only those after the start key (found by bisection);
- a backend lookup (every request makes several): moto takes its global lock and compares the whole
  registry of backends by equality before finding the account's backends there; once they exist, the
  lookup goes straight to them;
- SendMessage: moto computes every attribute of the queue (its three approximate counts are passes over
  the whole queue) to read whether it deduplicates by content; while sending, the counts are not computed;
- EventBridge's delivery to a rule's targets: moto builds each target's input by parsing eight JSONPath
  expressions (the default input paths) for every event, and every parse builds a new JSONPath parser
  (its grammar tables: yacc) — over half of moto's CPU time in a month-end spike. The parsed expressions
  are kept (``jsonpath_ng.ext.parse`` cached by its text; a parsed path is only read when it is used).

Behaviour is unchanged (``tests/integration/test_moto_speedups.py`` runs the same calls with and without
them); only the local stack's moto process applies them.
"""

from __future__ import annotations

import contextvars
import functools
import threading
import time
import weakref
from typing import Any

_APPLIED = False
# Set while SQS sends a message (see ``_sqs``): the queue's approximate counts are then not computed.
_SENDING: contextvars.ContextVar[bool] = contextvars.ContextVar("r2r_moto_sqs_sending", default=False)


def _fast_unix_time(original: Any) -> Any:
    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else float(original(dt))

    return unix_time


def _fast_unix_time_millis(original: Any) -> Any:
    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else float(original(dt))

    return unix_time_millis


class _Visible:
    """A queue's visible messages, found as they are iterated (``ReceiveMessage`` stops after the few it
    returns; moto's own property listed every visible message first). Iterates a snapshot of the queue,
    as moto's list did, so a concurrent delete does not disturb it."""

    def __init__(self, messages: list[Any]) -> None:
        self._messages = list(messages)
        self._now = time.time() * 1000.0

    def __iter__(self) -> Any:
        now = self._now
        return (m for m in self._messages if now > m.visible_at and not now < m.delayed_until)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        return any(True for _ in self)


def apply() -> None:
    """Patch moto's SQS, DynamoDB and EventBridge models in this process (idempotent)."""
    global _APPLIED  # noqa: PLW0603 - patch once per process
    if _APPLIED:
        return
    _routing()
    _backends()
    _sqs()
    _dynamodb_query()
    _dynamodb_scan()
    _event_input_paths()
    _APPLIED = True


def _event_input_paths() -> None:
    import jsonpath_ng.ext

    # moto's EventTemplateParser imports ``parse`` from the module at every call, so it gets this one.
    jsonpath_ng.ext.parse = functools.lru_cache(maxsize=1024)(jsonpath_ng.ext.parse)


def _routing() -> None:
    from moto import backends
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    original = DomainDispatcherApplication.get_backend_for_host
    answers: dict[tuple[int, str | None], Any] = {}

    @functools.wraps(original)
    def get_backend_for_host(self: Any, host: str | None) -> Any:
        key = (id(self), host)
        if key not in answers:
            answers[key] = original(self, host)
        return answers[key]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]


def _backends() -> None:
    from moto.core.base_backend import BackendDict

    # Every request reaches its service's backends through ``BackendDict[account]``, which takes moto's
    # global backend lock and tests the dict for membership in a list of every BackendDict by equality
    # (comparing whole dicts of backends), only to find the account's backends there already. Once an
    # account's backends exist and the dict is registered, nothing is left to do.
    original = BackendDict._create_account_specific_backend
    ready: set[tuple[int, str]] = set()

    def create(self: Any, account_id: str) -> None:
        if (id(self), account_id) in ready:
            return
        original(self, account_id)
        registry: list[Any] = getattr(BackendDict, "_instances")  # noqa: B009 - a class-level list
        if dict.__contains__(self, account_id) and any(d is self for d in registry):
            ready.add((id(self), account_id))

    BackendDict._create_account_specific_backend = create  # type: ignore[method-assign]


def _sqs() -> None:
    from moto.sqs import models as sqs

    sqs.unix_time = _fast_unix_time(sqs.unix_time)
    sqs.unix_time_millis = _fast_unix_time_millis(sqs.unix_time_millis)

    Queue, Message, SQSBackend = sqs.Queue, sqs.Message, sqs.SQSBackend

    def messages(self: Any) -> _Visible:
        return _Visible([] if _SENDING.get() else self._messages)

    def not_visible(self: Any) -> int:
        if _SENDING.get():
            return 0
        now = time.time() * 1000.0
        return sum(1 for m in self._messages if not now > m.visible_at)

    def delayed(self: Any) -> int:
        if _SENDING.get():
            return 0
        now = time.time() * 1000.0
        return sum(1 for m in self._messages if now < m.delayed_until)

    # SendMessage reads the queue's attributes for one of them (``ContentBasedDeduplication``), and moto
    # builds them all, the three approximate counts among them: a pass over the whole queue per message
    # sent. While a message is being sent the counts are not computed (read as 0); nothing in sending
    # reads them.
    original_send = SQSBackend.send_message

    def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = _SENDING.set(True)
        try:
            return original_send(self, *args, **kwargs)
        finally:
            _SENDING.reset(token)

    SQSBackend.send_message = send_message  # type: ignore[method-assign]
    Queue.messages = property(messages)  # type: ignore[method-assign,assignment]
    Queue.approximate_number_of_messages_not_visible = property(not_visible)  # type: ignore[method-assign,assignment]
    Queue.approximate_number_of_messages_delayed = property(delayed)  # type: ignore[method-assign,assignment]

    def valid_for_retention(self: Any, queue_name: str, message: Any) -> bool:
        retention_s = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention_s + message.sent_timestamp / 1000 > time.time())

    SQSBackend.is_message_valid_based_on_retention_period = valid_for_retention  # type: ignore[method-assign]

    # Every receipt handle a message was given → the message (weakly: a deleted message goes away).
    handles: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
    original_mark_received = Message.mark_received
    original_delete = Queue.delete_message

    def mark_received(self: Any, visibility_timeout: int | None = None) -> None:
        original_mark_received(self, visibility_timeout)
        handles[self.receipt_handle] = self

    def delete_message(self: Any, receipt_handle: str) -> None:
        if receipt_handle in self.deleted_messages:
            return
        message = handles.get(receipt_handle)
        if message is None or message not in self._messages:
            original_delete(self, receipt_handle)  # moto's own answer (invalid handle, never received …)
            return
        self._messages.remove(message)
        self.pending_messages.discard(message)
        self.deleted_messages.update(message.all_receipt_handles)

    Message.mark_received = mark_received  # type: ignore[method-assign]
    Queue.delete_message = delete_message  # type: ignore[method-assign]


def _dynamodb_query() -> None:
    from moto.dynamodb.models.table import Table

    # The partition a Query on the table's key reads, per server thread (moto serves requests in threads).
    reading = threading.local()
    original_query, original_all_items = Table.query, Table.all_items

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name or hash_key is None:
            return original_query(self, hash_key, *args, **kwargs)
        reading.partition = (self, hash_key)
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            reading.partition = None

    def all_items(self: Any) -> Any:
        partition = getattr(reading, "partition", None)
        if partition is None or partition[0] is not self:
            return original_all_items(self)
        found = self.items.get(partition[1])  # .get: moto's items is a defaultdict
        if found is None:
            return []
        return list(found.values()) if self.range_key_attr else [found]

    Table.query = query  # type: ignore[method-assign]
    Table.all_items = all_items  # type: ignore[method-assign]


def _sort_key(item: Any, ranged: bool) -> tuple[Any, ...]:
    """An item's keys as moto compares them (``cast_value``), kept on the item: its keys never change (a
    write with the same keys makes a new item)."""
    cached: tuple[Any, ...] | None = getattr(item, "_r2r_sort_key", None)
    if cached is None:
        cached = (
            (item.hash_key.cast_value, item.range_key.cast_value) if ranged else (item.hash_key.cast_value,)
        )
        item._r2r_sort_key = cached
    return cached


def _dynamodb_scan() -> None:
    import bisect

    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    # The start key of the Scan page a server thread is reading (moto serves requests in threads).
    reading = threading.local()
    original_scan, original_all_items = Table.scan, Table.all_items

    def scan(self: Any, filters: Any, limit: Any, exclusive_start_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[1] if len(args) > 1 else kwargs.get("index_name")
        if index_name:
            return original_scan(self, filters, limit, exclusive_start_key, *args, **kwargs)
        reading.start = (self, exclusive_start_key)
        try:
            return original_scan(self, filters, limit, exclusive_start_key, *args, **kwargs)
        finally:
            reading.start = None

    def all_items(self: Any) -> Any:
        start = getattr(reading, "start", None)
        if start is None or start[0] is not self:
            return original_all_items(self)
        # moto's order (``all_items``): by hash key, then range key, compared as DynamoType compares them
        # (their ``cast_value``; a key attribute has one type), each key cast once instead of at every
        # comparison. The start key is the last item of the page before: what follows it is this page's
        # (moto then skips the items of other segments of a parallel scan, as before).
        ranged = bool(self.range_key_attr)
        if ranged:
            keyed = sorted(
                (_sort_key(x, True), x) for partition in self.items.values() for x in partition.values()
            )
        else:
            keyed = sorted((_sort_key(x, False), x) for x in self.items.values())
        key = start[1]
        if key is None:
            return [item for _, item in keyed]
        target: tuple[Any, ...] = (DynamoType(key[self.hash_key_attr]).cast_value,)
        if ranged:
            target += (DynamoType(key[self.range_key_attr]).cast_value,)
        after = bisect.bisect_right(keyed, target, key=lambda pair: pair[0])
        return [item for _, item in keyed[after:]]

    Table.scan = scan  # type: ignore[method-assign]
    Table.all_items = all_items  # type: ignore[method-assign]
