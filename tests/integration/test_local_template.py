"""The local stack's template reader: intrinsic functions, physical names, creation order."""

from __future__ import annotations

import json

import pytest

from infra.local.provision import function_name_of
from infra.local.template import (
    Resolver,
    Template,
    TemplateError,
    default_attributes,
    physical_name,
    substitute_definition,
)

TEMPLATE = {
    "Parameters": {"Stage": {"Type": "String", "Default": "dev"}},
    "Mappings": {"Sizes": {"dev": {"Batch": 5}}},
    "Conditions": {"IsDev": {"Fn::Equals": [{"Ref": "Stage"}, "dev"]}},
    "Resources": {
        "Dlq": {"Type": "AWS::SQS::Queue", "Properties": {"MessageRetentionPeriod": 1209600}},
        "Queue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": ["Dlq", "Arn"]}, "maxReceiveCount": 5}
            },
        },
        "Table": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
        "Fn": {
            "Type": "AWS::Lambda::Function",
            "DependsOn": ["Role"],
            "Properties": {"Environment": {"Variables": {"TABLE": {"Ref": "Table"}}}},
        },
        "Role": {"Type": "AWS::IAM::Role", "Properties": {}},
    },
}


def _resolver() -> Resolver:
    template = Template.from_dict(TEMPLATE, stack_name="r2r-dev")
    resolver = Resolver(template)
    for logical_id in template.creation_order():
        resource = template.resources[logical_id]
        name = physical_name("r2r-dev", logical_id)
        ref, attributes = default_attributes(resource.type, name, logical_id)
        resolver.set_physical(logical_id, ref, attributes)
    return resolver


def test_creation_order_puts_references_first():
    template = Template.from_dict(TEMPLATE, stack_name="r2r-dev")

    order = template.creation_order()

    assert order.index("Dlq") < order.index("Queue")
    assert order.index("Table") < order.index("Fn")
    assert order.index("Role") < order.index("Fn")  # DependsOn counts too


def test_circular_references_are_reported():
    template = Template.from_dict(
        {
            "Resources": {
                "A": {"Type": "AWS::SQS::Queue", "Properties": {"X": {"Ref": "B"}}},
                "B": {"Type": "AWS::SQS::Queue", "Properties": {"X": {"Fn::GetAtt": ["A", "Arn"]}}},
            }
        }
    )

    with pytest.raises(TemplateError, match="circular"):
        template.creation_order()


def test_ref_getatt_and_pseudo_parameters():
    resolver = _resolver()

    assert resolver.resolve({"Ref": "Table"}) == "r2r-dev-Table"
    assert resolver.resolve({"Fn::GetAtt": ["Queue", "QueueName"]}) == "r2r-dev-Queue"
    assert resolver.resolve({"Fn::GetAtt": "Dlq.Arn"}) == "arn:aws:sqs:us-east-1:123456789012:r2r-dev-Dlq"
    assert resolver.resolve({"Ref": "AWS::Region"}) == "us-east-1"
    assert resolver.resolve({"Ref": "AWS::AccountId"}) == "123456789012"
    assert resolver.resolve({"Ref": "AWS::Partition"}) == "aws"
    assert resolver.resolve({"Ref": "AWS::URLSuffix"}) == "amazonaws.com"
    assert resolver.resolve({"Ref": "Stage"}) == "dev"


def test_join_sub_select_split_findinmap_if():
    resolver = _resolver()

    joined = resolver.resolve(
        {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::", {"Ref": "Table"}, "/*"]]}
    )
    subbed = resolver.resolve({"Fn::Sub": "${AWS::Region}/${Table}/${Dlq.Arn}/${!Literal}"})
    subbed_vars = resolver.resolve({"Fn::Sub": ["${A}-${Table}", {"A": {"Ref": "Stage"}}]})
    selected = resolver.resolve({"Fn::Select": [1, {"Fn::Split": [":", {"Fn::GetAtt": ["Dlq", "Arn"]}]}]})
    mapped = resolver.resolve({"Fn::FindInMap": ["Sizes", {"Ref": "Stage"}, "Batch"]})
    chosen = resolver.resolve({"Fn::If": ["IsDev", "yes", "no"]})

    assert joined == "arn:aws:s3:::r2r-dev-Table/*"
    assert subbed == "us-east-1/r2r-dev-Table/arn:aws:sqs:us-east-1:123456789012:r2r-dev-Dlq/${Literal}"
    assert subbed_vars == "dev-r2r-dev-Table"
    assert selected == "aws"
    assert mapped == 5
    assert chosen == "yes"


def test_no_value_removes_the_property():
    resolver = _resolver()

    resolved = resolver.resolve({"A": 1, "B": {"Ref": "AWS::NoValue"}, "C": [1, {"Ref": "AWS::NoValue"}]})

    assert resolved == {"A": 1, "C": [1]}


def test_unknown_names_fail_clearly():
    resolver = _resolver()

    with pytest.raises(TemplateError, match="unknown name"):
        resolver.resolve({"Ref": "Nope"})
    with pytest.raises(TemplateError, match="attribute unknown"):
        resolver.resolve({"Fn::GetAtt": ["Table", "Nope"]})
    with pytest.raises(TemplateError, match="not supported"):
        resolver.resolve({"Fn::Transmogrify": []})


def test_physical_names_are_unique_and_within_limits():
    long_id = "InvoiceWorkflowExceptionsDeadLetterQueueWithAVeryLongLogicalIdentifier0A1B2C3D"

    sqs = physical_name("r2r-dev", long_id, "sqs")
    fifo = physical_name("r2r-dev", long_id, "sqs", suffix=".fifo")
    rule = physical_name("r2r-dev", long_id, "events")
    other = physical_name("r2r-dev", long_id + "X", "events")
    bucket = physical_name("r2r-dev", "RawArchiveBucket_01", "s3")

    assert len(sqs) <= 80 and len(fifo) <= 80 and fifo.endswith(".fifo")
    assert len(rule) <= 64 and rule != other
    assert bucket == "r2r-dev-rawarchivebucket-01"
    assert physical_name("r2r-dev", "Queue", "sqs") == "r2r-dev-Queue"


def test_definition_substitutions():
    definition = json.dumps({"States": {"A": {"Parameters": {"FunctionName": "${FnArn}", "x.$": "$.y"}}}})

    result = substitute_definition(definition, {"FnArn": "arn:aws:lambda:us-east-1:123456789012:function:f"})

    assert json.loads(result)["States"]["A"]["Parameters"] == {
        "FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:f",
        "x.$": "$.y",
    }


def test_function_name_of_arns_and_aliases():
    assert function_name_of("arn:aws:lambda:us-east-1:123456789012:function:fn") == "fn"
    assert function_name_of("arn:aws:lambda:us-east-1:123456789012:function:fn:live") == "fn"
    assert function_name_of("fn:live") == "fn"
    assert function_name_of("fn") == "fn"
