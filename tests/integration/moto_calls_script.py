"""The SQS and DynamoDB calls ``test_moto_speedups`` runs twice: ``python <this file> plain|fast``.

Prints one JSON line of what moto answered; ``fast`` applies :mod:`infra.local.moto_speedups` first.
"""

import json
import sys

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
        return [
            int(a[k])
            for k in (
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            )
        ]

    out["initial"] = counts()
    first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)["Messages"]
    out["first"] = [m["Body"] for m in first]
    out["after_receive"] = counts()
    deleted = sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(first[:5])],
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
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get(
            "Messages", []
        )
        if not batch:
            break
        seen += [m["Body"] for m in batch]
    out["drained"] = sorted(set(seen))
    out["dlq"] = int(
        sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
    )
    out["final"] = counts()

    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "g")],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "byg",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for p in range(5):
        for i in range(12):
            ddb.put_item(
                TableName="t",
                Item={
                    "pk": {"S": f"ENG#{p}"},
                    "sk": {"S": f"{'CHARGE' if i % 3 else 'OTHER'}#{i:02d}"},
                    "n": {"N": str(i)},
                    "g": {"S": f"g{i % 2}"},
                },
            )

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
    out["query_prefix_paged"] = q(
        KeyConditionExpression="pk = :p AND begins_with(sk, :s)",
        ExpressionAttributeValues={**eq, ":s": {"S": "CHARGE#"}},
        Limit=3,
        ProjectionExpression="pk, sk, n",
    )
    out["query_reverse_filtered"] = q(
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={**eq, ":n": {"N": "5"}},
        ScanIndexForward=False,
        FilterExpression="n > :n",
    )
    out["query_missing"] = q(
        KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "ENG#none"}}
    )
    out["query_index"] = sorted(
        len(page)
        for page in q(
            IndexName="byg", KeyConditionExpression="g = :g", ExpressionAttributeValues={":g": {"S": "g1"}}
        )
    )
    out["scan"] = ddb.scan(TableName="t")["Count"]

    def scan(table, **kw):
        pages, start = [], None
        while True:
            args = dict(TableName=table, **kw)
            if start:
                args["ExclusiveStartKey"] = start
            r = ddb.scan(**args)
            pages.append([(i["pk"]["S"], i["sk"]["S"] if "sk" in i else None) for i in r["Items"]])
            start = r.get("LastEvaluatedKey")
            if not start:
                return pages

    # Paged scans: every page after the first starts after its start key (moto's order: hash, range key).
    out["scan_paged"] = scan("t", Limit=7)
    out["scan_paged_filtered"] = scan(
        "t",
        Limit=9,
        FilterExpression="begins_with(sk, :s) AND n > :n",
        ExpressionAttributeValues={":s": {"S": "CHARGE#"}, ":n": {"N": "6"}},
    )
    # A parallel scan: each segment paged on its own.
    out["scan_segments"] = [scan("t", Limit=5, Segment=n, TotalSegments=3) for n in range(3)]
    # A start key that is no item's: the page starts at the next item.
    out["scan_from_gap"] = ddb.scan(
        TableName="t", Limit=4, ExclusiveStartKey={"pk": {"S": "ENG#2"}, "sk": {"S": "CHARGE#05x"}}
    )["Items"]
    out["scan_from_gap"] = [(i["pk"]["S"], i["sk"]["S"]) for i in out["scan_from_gap"]]
    ddb.create_table(
        TableName="h",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for i in range(11):
        ddb.put_item(TableName="h", Item={"pk": {"S": f"k{(i * 7) % 11:02d}"}})
    out["scan_hash_only"] = scan("h", Limit=3)
    # Items written between pages are found by the pages after them, as in moto.
    first = ddb.scan(TableName="h", Limit=4)
    ddb.put_item(TableName="h", Item={"pk": {"S": "k99"}})
    ddb.delete_item(TableName="h", Key={"pk": {"S": "k05"}})
    rest = scan("h", ExclusiveStartKey=first["LastEvaluatedKey"])
    out["scan_changed_between_pages"] = [[i["pk"]["S"] for i in first["Items"]], rest]

    # EventBridge to SQS: the default target input, and an input transformer (paths parsed per event).
    events = boto3.client("events", region_name="us-east-1")
    events.create_event_bus(Name="bus")
    plain_q = sqs.create_queue(QueueName="from-rule")["QueueUrl"]
    shaped_q = sqs.create_queue(QueueName="from-transformer")["QueueUrl"]

    def arn(queue_url):
        return sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

    events.put_rule(
        Name="r", EventBusName="bus", EventPattern=json.dumps({"detail-type": ["time_entry.approved"]})
    )
    events.put_targets(
        Rule="r",
        EventBusName="bus",
        Targets=[
            {"Id": "plain", "Arn": arn(plain_q)},
            {
                "Id": "shaped",
                "Arn": arn(shaped_q),
                "InputTransformer": {
                    "InputPathsMap": {"entry": "$.detail.data.id", "hours": "$.detail.data.hours"},
                    "InputTemplate": '{"entry": "<entry>", "hours": "<hours>", "what": "approved"}',
                },
            },
        ],
    )
    for i in range(12):
        kind = "time_entry.approved" if i % 4 else "expense.approved"
        detail = {"data": {"id": f"te-{i}", "hours": f"{i}.5"}}
        events.put_events(
            Entries=[
                {"EventBusName": "bus", "Source": "r2r", "DetailType": kind, "Detail": json.dumps(detail)}
            ]
        )

    def bodies(queue_url):
        got = []
        while True:
            r = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
            if not r.get("Messages"):
                return got
            for m in r["Messages"]:
                body = json.loads(m["Body"])
                got.append({k: v for k, v in body.items() if k not in {"id", "time"}})
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])

    out["rule_plain"] = sorted(bodies(plain_q), key=json.dumps)
    out["rule_shaped"] = sorted(bodies(shaped_q), key=json.dumps)
print(json.dumps(out))
