"""The documented IAM policy grants exactly the calls the worker makes: no more, no fewer."""

from __future__ import annotations

import json
import re

from tests.support.paths import REPO

# boto3 method -> the IAM actions it needs (HeadObject is authorised by s3:GetObject; a multipart
# upload by s3:PutObject, plus s3:AbortMultipartUpload to clean up a failed one).
ACTIONS = {
    "put_object": {"s3:PutObject"},
    "get_object": {"s3:GetObject"},
    "head_object": {"s3:GetObject"},
    "delete_object": {"s3:DeleteObject"},
    "list_objects_v2": {"s3:ListBucket"},
    "upload_fileobj": {"s3:PutObject", "s3:AbortMultipartUpload"},
    "receive_message": {"sqs:ReceiveMessage"},
    "delete_message": {"sqs:DeleteMessage"},
    "change_message_visibility": {"sqs:ChangeMessageVisibility"},
    "get_queue_attributes": {"sqs:GetQueueAttributes"},
}
WORKER_MODULES = ["processor/storage/s3.py", "processor/storage/s3_inbox.py", "processor/storage/sqs.py",
                  "processor/storage/markers.py", "processor/app.py", "processor/worker.py"]
CALL = re.compile(r"\b(?:client|s3|sqs)\.(\w+)\(")
PAGINATED = re.compile(r"get_paginator\(\"(\w+)\"\)")


def worker_calls() -> set[str]:
    calls = set()
    for module in WORKER_MODULES:
        source = (REPO / module).read_text()
        calls |= set(CALL.findall(source)) | set(PAGINATED.findall(source))
    return calls - {"get_paginator"}


def test_every_worker_call_is_known() -> None:
    unknown = worker_calls() - set(ACTIONS)
    assert not unknown, f"new AWS calls {unknown}: add them to ACTIONS and to docs/iam-policy.json"


def test_policy_grants_exactly_what_the_worker_calls() -> None:
    policy = json.loads((REPO / "docs" / "iam-policy.json").read_text())
    granted = {action for statement in policy["Statement"] for action in statement["Action"]}
    needed = set().union(*(ACTIONS[call] for call in worker_calls()))
    assert granted == needed
    assert all(statement["Effect"] == "Allow" and "*" not in "".join(statement["Action"])
               for statement in policy["Statement"])
