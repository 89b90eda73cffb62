"""The local stack's faster moto SQS (``infra.local.moto_speedups``) answers exactly as moto's own.

The same script of SQS calls runs in two fresh interpreters, one with the speedups applied; both must
produce the same answers, and those answers must be SQS's (checked below). A fresh interpreter keeps the
patches out of this test process, where other tests use moto unpatched.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    if sys.argv[1] == "fast":
        from infra.local import moto_speedups
        moto_speedups.apply()
    import boto3
    from moto import mock_aws

    out = {}
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.create_queue(
            QueueName="q",
            Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})},
        )["QueueUrl"]
        for i in range(30):
            sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
        sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)

        def counts():
            a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            return [int(a[k]) for k in ("ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed")]

        out["initial"] = counts()
        first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)["Messages"]
        out["first"] = [m["Body"] for m in first]
        out["after_receive"] = counts()
        deleted = sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(first[:5])]
        )
        out["batch_deleted"] = len(deleted.get("Successful", []))
        sqs.delete_message(QueueUrl=url, ReceiptHandle=first[0]["ReceiptHandle"])  # again: accepted
        out["after_delete"] = counts()
        try:
            sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")
            out["invalid"] = "accepted"
        except sqs.exceptions.ReceiptHandleIsInvalid:
            out["invalid"] = "ReceiptHandleIsInvalid"
        # A message received twice: its first (old) receipt handle still deletes it.
        again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=0)["Messages"][0]
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=30)
        sqs.delete_message(QueueUrl=url, ReceiptHandle=again["ReceiptHandle"])
        out["old_handle_deleted"] = again["Body"]
        out["after_old_handle"] = counts()
        seen = []
        while True:
            batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
            if not batch:
                break
            seen += [m["Body"] for m in batch]
        out["drained"] = sorted(set(seen))
        out["dlq"] = int(sqs.get_queue_attributes(
            QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])
        out["final"] = counts()

        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "g")],
            GlobalSecondaryIndexes=[{"IndexName": "byg", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                     "Projection": {"ProjectionType": "ALL"}}],
            BillingMode="PAY_PER_REQUEST",
        )
        for p in range(5):
            for i in range(12):
                ddb.put_item(TableName="t", Item={"pk": {"S": f"ENG#{p}"}, "sk": {"S": f"{'CHARGE' if i % 3 else 'OTHER'}#{i:02d}"},
                                                  "n": {"N": str(i)}, "g": {"S": f"g{i % 2}"}})
        def q(**kw):
            pages, start = [], None
            while True:
                args = dict(TableName="t", **kw)
                if start:
                    args["ExclusiveStartKey"] = start
                r = ddb.query(**args)
                pages.append([(i["pk"]["S"], i["sk"]["S"], sorted(i)) for i in r["Items"]])
                start = r.get("LastEvaluatedKey")
                if not start:
                    return pages
        eq = {":p": {"S": "ENG#3"}}
        out["query_all"] = q(KeyConditionExpression="pk = :p", ExpressionAttributeValues=eq)
        out["query_prefix_paged"] = q(KeyConditionExpression="pk = :p AND begins_with(sk, :s)",
                                      ExpressionAttributeValues={**eq, ":s": {"S": "CHARGE#"}}, Limit=3,
                                      ProjectionExpression="pk, sk, n")
        out["query_reverse_filtered"] = q(KeyConditionExpression="pk = :p", ExpressionAttributeValues={**eq, ":n": {"N": "5"}},
                                          ScanIndexForward=False, FilterExpression="n > :n")
        out["query_missing"] = q(KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "ENG#none"}})
        out["query_index"] = sorted(len(page) for page in q(IndexName="byg", KeyConditionExpression="g = :g",
                                                             ExpressionAttributeValues={":g": {"S": "g1"}}))
        out["scan"] = ddb.scan(TableName="t")["Count"]
    print(json.dumps(out))
    """
)


def _run(mode: str) -> dict:
    done = subprocess.run(  # noqa: S603 - this interpreter, our script
        [sys.executable, "-c", SCRIPT, mode],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_fast_sqs_answers_like_motos_own() -> None:
    plain, fast = _run("plain"), _run("fast")
    assert fast == plain
    assert fast["initial"] == [30, 0, 1]  # the delayed message is neither visible nor received
    assert fast["first"] == [f"m{i}" for i in range(10)]
    assert fast["after_receive"] == [20, 10, 1]
    assert fast["batch_deleted"] == 5
    assert fast["after_delete"] == [20, 5, 1]
    assert fast["invalid"] == "ReceiptHandleIsInvalid"
    assert fast["old_handle_deleted"] == "m10"
    assert fast["after_old_handle"] == [19, 5, 1]
    # Every remaining visible message went to the DLQ after its second receive, or was received.
    assert "m29" in fast["drained"]
    assert "later" not in fast["drained"]
    assert fast["dlq"] > 0
    # DynamoDB queries: one partition, in key order, paged, reversed, filtered; an index and a scan as before.
    assert [sk for _pk, sk, _ in fast["query_all"][0]] == [
        f"{'CHARGE' if i % 3 else 'OTHER'}#{i:02d}" for i in sorted(range(12), key=lambda i: ("CHARGE" if i % 3 else "OTHER", i))
    ]
    assert {pk for page in fast["query_all"] for pk, _sk, _ in page} == {"ENG#3"}
    assert [len(page) for page in fast["query_prefix_paged"]] == [3, 3, 2]
    assert all(attrs == ["n", "pk", "sk"] for page in fast["query_prefix_paged"] for _pk, _sk, attrs in page)
    assert [sk for _pk, sk, _ in fast["query_reverse_filtered"][0]] == [
        "OTHER#09", "OTHER#06", "CHARGE#11", "CHARGE#10", "CHARGE#08", "CHARGE#07"
    ]
    assert fast["query_missing"] == [[]]
    assert sum(fast["query_index"]) == 30
    assert fast["scan"] == 60
