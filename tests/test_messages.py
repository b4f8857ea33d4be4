"""SQS message bodies: every shape AWS (and moto) delivers, every malformed one, and properties over both."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.errors import InvalidManifest, PermanentError
from processor.manifest import MAX_MANIFEST_BYTES, Manifest, parse_manifest
from processor.messages import InlineManifest, InvalidMessage, InvalidRecord, ObjectRef, parse_message

from tests.support.manifests import manifest

BUCKET = "f5-inbox"
TIME = "2026-11-02T10:00:00.000Z"


def record(key: str, *, event: str = "ObjectCreated:Put", version: str = "2.1", bucket: str = BUCKET) -> dict[str, Any]:
    """One record as S3 writes it; `key` is given already URL-encoded, as it travels."""
    return {
        "eventVersion": version,
        "eventSource": "aws:s3",
        "awsRegion": "eu-west-1",
        "eventTime": TIME,
        "eventName": event,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": key, "size": 120, "eTag": "d41d8cd98f00b204e9800998ecf8427e", "sequencer": "0055"},
        },
    }


def s3_event(*records: Any) -> str:
    return json.dumps({"Records": list(records)})


def sns(message: str) -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "4b1c9b3e-0000-0000-0000-000000000000",
            "TopicArn": "arn:aws:sns:eu-west-1:111122223333:f5-inbox",
            "Subject": "Amazon S3 Notification",
            "Message": message,
            "Timestamp": TIME,
        }
    )


def eventbridge(key: str, *, detail_type: str = "Object Created", **detail: Any) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": detail_type,
            "source": "aws.s3",
            "account": "111122223333",
            "time": "2021-11-12T00:00:00Z",
            "region": "ca-central-1",
            "resources": [f"arn:aws:s3:::{BUCKET}"],
            "detail": {
                "version": "0",
                "bucket": {"name": BUCKET},
                "object": {"key": key, "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184", "sequencer": "617f"},
                "reason": "PutObject",
                **detail,
            },
        }
    )


TEST_EVENT = json.dumps(
    {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2014-10-13T15:57:02.089Z",
        "Bucket": BUCKET,
        "RequestId": "5582815E1AEA5ADF",
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR",
    }
)


def ref(key: str, **fields: Any) -> ObjectRef:
    defaults: dict[str, Any] = {"etag": "d41d8cd98f00b204e9800998ecf8427e", "size": 120, "event_time": TIME}
    return ObjectRef(bucket=BUCKET, key=key, **{**defaults, **fields})


# --- the shapes -------------------------------------------------------------------------------


def test_s3_event_with_one_record() -> None:
    assert parse_message(s3_event(record("inbox/job-1.json"))) == [ref("inbox/job-1.json")]


def test_s3_event_with_several_records_gives_every_one_in_order() -> None:
    body = s3_event(record("inbox/a.json"), record("inbox/b.json", bucket="other"), record("inbox/c.json"))
    assert parse_message(body) == [
        ref("inbox/a.json"),
        ObjectRef("other", "inbox/b.json", "d41d8cd98f00b204e9800998ecf8427e", 120, TIME),
        ref("inbox/c.json"),
    ]


@pytest.mark.parametrize(
    ("encoded", "key"),
    [
        ("inbox%2Fa+b.json", "inbox/a b.json"),  # moto: slash encoded, space as '+'
        ("inbox/red+flower.json", "inbox/red flower.json"),  # AWS's own example
        ("inbox/c%2B%2B+notes.json", "inbox/c++ notes.json"),  # a real '+' arrives as %2B
        ("inbox/%E6%97%A5%E6%9C%AC%E8%AA%9E.json", "inbox/日本語.json"),
        ("inbox/caf%C3%A9%20%28copy%29.json", "inbox/café (copy).json"),  # %20 is a space too
        ("inbox/100%25.json", "inbox/100%.json"),
    ],
)
def test_s3_keys_are_url_decoded(encoded: str, key: str) -> None:
    assert parse_message(s3_event(record(encoded))) == [ref(key)]


def test_records_of_other_events_are_skipped() -> None:
    body = s3_event(record("inbox/old.json", event="ObjectRemoved:Delete"), record("inbox/new.json"))
    assert parse_message(body) == [ref("inbox/new.json")]
    assert parse_message(s3_event(record("inbox/old.json", event="ObjectRemoved:Delete"))) == []


def test_minor_event_versions_are_accepted() -> None:
    for version in ("2.0", "2.1", "2.3", "2.6", "2"):
        assert parse_message(s3_event(record("k.json", version=version))) == [ref("k.json")]


def test_etag_size_and_time_are_optional() -> None:
    bare = record("k.json")
    del bare["eventTime"], bare["s3"]["object"]["size"], bare["s3"]["object"]["eTag"]
    assert parse_message(s3_event(bare)) == [ObjectRef(BUCKET, "k.json", None, None, None)]


# --- one record at a time -----------------------------------------------------------------------


def broken(key: str, **fields: Any) -> dict[str, Any]:
    """A record for `key` with `fields` replaced: malformed wherever a field is."""
    return {**record(key), **fields}


def test_a_malformed_record_is_a_job_of_its_own_and_the_others_still_run() -> None:
    """Finding 4 of issue 11: one bad record in ten used to turn the whole message into one invalid_message."""
    records = [record(f"inbox/{i}.json") for i in range(10)]
    records[4] = broken("inbox/4.json", eventSource="minio:s3")
    jobs = parse_message(s3_event(*records))
    assert jobs[:4] + jobs[5:] == [ref(f"inbox/{i}.json") for i in range(10) if i != 4]
    assert jobs[4] == InvalidRecord(4, "Records[4].eventSource is 'minio:s3'; only 'aws:s3' is understood")


def test_each_bad_record_is_named_by_its_place_in_records() -> None:
    """Skipped records keep their places, so a bad record's index (its result's name) is the same on every
    delivery, and two bad records of one message never share a name."""
    body = s3_event(record("inbox/gone.json", event="ObjectRemoved:Delete"), broken("inbox/a.json", eventVersion="3.0"),
                    record("inbox/ok.json"), record("50%off.json"))
    assert parse_message(body) == [
        InvalidRecord(1, "Records[1].eventVersion is '3.0'; only major version 2 is understood"),
        ref("inbox/ok.json"),
        InvalidRecord(3, "Records[3].s3.object.key is not valid URL encoding ('%' at 2): '50%off.json'"),
    ]
    twice = broken("inbox/k.json", s3="x")
    assert parse_message(s3_event(twice, twice)) == [
        InvalidRecord(i, f"Records[{i}]: s3 must be an object, not string") for i in range(2)
    ]


def test_records_are_isolated_inside_an_sns_envelope_too() -> None:
    body = sns(s3_event(record("inbox/a.json"), "x", record("inbox/b.json")))
    assert parse_message(body) == [ref("inbox/a.json"), InvalidRecord(1, "Records[1] must be an object, not string"),
                                   ref("inbox/b.json")]


def test_a_broken_envelope_is_still_one_invalid_message() -> None:
    """What cannot be split into records stays one failure for the message."""
    for body in ('{"Records": "x"}', '{"Records": []}', sns("{not json"), sns(sns(s3_event(record("k.json"))))):
        with pytest.raises(InvalidMessage):
            parse_message(body)


def test_sns_envelope_with_an_s3_event() -> None:
    assert parse_message(sns(s3_event(record("inbox/a+b.json")))) == [ref("inbox/a b.json")]


def test_sns_envelope_with_the_test_event() -> None:
    assert parse_message(sns(TEST_EVENT)) == []


def test_sns_envelope_with_an_inline_manifest() -> None:
    inner = json.dumps(manifest(id="from-sns"))
    assert parse_message(sns(inner)) == [InlineManifest(inner.encode())]


def test_eventbridge_object_created_key_is_taken_verbatim() -> None:
    key = "inbox/a b+c%2B 100%.json"  # would change under unquote_plus: proves no decoding
    assert parse_message(eventbridge(key, **{"event-version": "1.1"})) == [
        ObjectRef(BUCKET, key, "b1946ac92492d2347c6235b4d2611184", 5, "2021-11-12T00:00:00Z")
    ]


def test_eventbridge_as_moto_sends_it() -> None:
    """moto spells the etag `eTag` and sends no event-version."""
    body = json.loads(eventbridge("inbox/x.json"))
    body["detail"]["object"] = {"key": "inbox/x.json", "size": 7, "eTag": "abc", "version-id": None}
    assert parse_message(json.dumps(body)) == [ObjectRef(BUCKET, "inbox/x.json", "abc", 7, "2021-11-12T00:00:00Z")]


def test_eventbridge_other_s3_events_are_skipped() -> None:
    assert parse_message(eventbridge("inbox/x.json", detail_type="Object Deleted")) == []


def test_s3_test_event_means_nothing_to_do() -> None:
    assert parse_message(TEST_EVENT) == []


def test_any_other_object_is_an_inline_manifest() -> None:
    body = json.dumps(manifest(id="job-7"))
    jobs = parse_message(body)
    assert jobs == [InlineManifest(body.encode())]
    assert isinstance(jobs[0], InlineManifest)
    assert parse_manifest(jobs[0].body, "unused").job_id == "job-7"


def test_inline_manifest_is_not_validated_here() -> None:
    """A broken manifest still reaches the manifest parser, which reports it with its own codes."""
    assert parse_message('{"text": 5}') == [InlineManifest(b'{"text": 5}')]
    assert parse_message("{}") == [InlineManifest(b"{}")]


def test_an_object_with_records_is_an_event_never_a_manifest() -> None:
    """`Records` (like every key that marks an event) is not a manifest field, and the manifest
    forbids unknown fields: no valid manifest can carry it, so treating it as an event loses nothing."""
    with pytest.raises(InvalidMessage, match="Records is empty"):
        parse_message(json.dumps({**manifest(), "Records": []}))
    with pytest.raises(InvalidMessage, match="Records must be a list"):
        parse_message(json.dumps({**manifest(), "Records": "x"}))


@pytest.mark.parametrize("marker", ["Records", "Type", "detail-type", "Event"])
def test_event_markers_can_never_be_manifest_fields(marker: str) -> None:
    fields = set(Manifest.model_fields) | {f.alias for f in Manifest.model_fields.values() if f.alias}
    assert marker not in fields
    with pytest.raises(InvalidManifest, match="unknown field"):
        parse_manifest(json.dumps({**manifest(id="x"), marker: "y"}).encode(), "x")


# --- the errors -------------------------------------------------------------------------------


def mutated(change: Any) -> str:
    body = record("inbox/k.json")
    change(body)
    return s3_event(body)


def eventbridge_mutated(change: Any) -> str:
    body = json.loads(eventbridge("inbox/k.json"))
    change(body)
    return json.dumps(body)


# A body that cannot be read as a whole: one invalid_message for the message.
MESSAGE_ERRORS = [
    ("not json", "not valid JSON"),
    ("", "not valid JSON"),
    ('{"Records": [', "not valid JSON"),
    ("[]", "must be a JSON object, not array"),
    ('"text"', "must be a JSON object, not string"),
    ("42", "must be a JSON object, not number"),
    ("null", "must be a JSON object, not null"),
    ("[" * 100_000, "nested too deeply"),
    ('{"size": ' + "9" * 5000 + "}", "not valid JSON"),
    ('{"text": "\ud800"}', "not valid Unicode"),
    ('{"Records": {}}', "Records must be a list, not object"),
    ('{"Records": []}', "Records is empty"),
    (json.dumps({"Type": "SubscriptionConfirmation", "Message": "x"}), "Type 'SubscriptionConfirmation' is not a job"),
    (json.dumps({"Type": "Notification"}), "Message must be a string, not null"),
    (json.dumps({"Type": "Notification", "Message": {"Records": []}}), "Message must be a string, not object"),
    (sns("not json"), "SNS Message is not valid JSON"),
    (sns("[1]"), "SNS Message must be a JSON object"),
    (sns(sns(TEST_EVENT)), "SNS envelope"),
    (sns(s3_event()), "Records is empty"),
    (eventbridge_mutated(lambda e: e.update(source="aws.ec2")), "source is 'aws.ec2'"),
    (eventbridge_mutated(lambda e: e.update({"detail-type": 1})), "detail-type must be a string"),
    (eventbridge_mutated(lambda e: e.pop("detail")), "detail.object.key is missing"),
    (eventbridge_mutated(lambda e: e["detail"]["bucket"].pop("name")), "detail.bucket.name is missing"),
    (eventbridge_mutated(lambda e: e["detail"]["object"].update(key="")), "detail.object.key is empty"),
    (eventbridge_mutated(lambda e: e["detail"].update({"event-version": "2.0"})), "only major version 1"),
    (json.dumps({"Service": "Amazon S3", "Event": "s3:Other"}), "only 's3:TestEvent'"),
]


def ids(cases: list[tuple[str, str]]) -> list[str]:
    return [f"{i}-{e[:30]}" for i, (_, e) in enumerate(cases)]


@pytest.mark.parametrize(("body", "expected"), MESSAGE_ERRORS, ids=ids(MESSAGE_ERRORS))
def test_malformed_messages_are_invalid_message(body: str, expected: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_message(body)
    assert expected in str(caught.value)
    assert isinstance(caught.value, PermanentError)
    assert caught.value.code == "invalid_message"


# One malformed record (here the only one): an InvalidRecord job of its own, not an error for the message.
RECORD_ERRORS = [
    ('{"Records": ["x"]}', "Records[0] must be an object, not string"),
    (mutated(lambda r: r.pop("eventSource")), "eventSource is missing"),
    (mutated(lambda r: r.update(eventSource="minio:s3")), "eventSource is 'minio:s3'"),
    (mutated(lambda r: r.pop("eventVersion")), "eventVersion is missing"),
    (mutated(lambda r: r.update(eventVersion="3.0")), "eventVersion is '3.0'; only major version 2"),
    (mutated(lambda r: r.update(eventVersion="20.1")), "only major version 2"),
    (mutated(lambda r: r.update(eventVersion=2.1)), "eventVersion must be a string, not number"),
    (mutated(lambda r: r.update(eventName=None)), "eventName is missing"),
    (mutated(lambda r: r.pop("s3")), "s3.object.key is missing"),
    (mutated(lambda r: r.update(s3="x")), "s3 must be an object, not string"),
    (mutated(lambda r: r["s3"].pop("bucket")), "s3.bucket.name is missing"),
    (mutated(lambda r: r["s3"]["bucket"].update(name="")), "s3.bucket.name is empty"),
    (mutated(lambda r: r["s3"]["object"].pop("key")), "s3.object.key is missing"),
    (mutated(lambda r: r["s3"]["object"].update(key="")), "s3.object.key is empty"),
    (mutated(lambda r: r["s3"]["object"].update(key=["k"])), "s3.object.key must be a string, not array"),
    (mutated(lambda r: r["s3"]["object"].update(key="50%off.json")), "not valid URL encoding"),
    (mutated(lambda r: r["s3"]["object"].update(key="a%FF.json")), "does not decode to UTF-8"),
    (mutated(lambda r: r["s3"]["object"].update(key="a%ED%A0%80")), "does not decode to UTF-8"),
    (mutated(lambda r: r["s3"]["object"].update(key="a\ud800")), "not valid Unicode"),
    (mutated(lambda r: r["s3"]["object"].update(size="120")), "size must be a whole number of bytes"),
    (mutated(lambda r: r["s3"]["object"].update(size=-1)), "size must be a whole number of bytes"),
    (mutated(lambda r: r["s3"]["object"].update(size=True)), "size must be a whole number of bytes"),
    (mutated(lambda r: r["s3"]["object"].update(eTag=1)), "eTag must be a string"),
]


@pytest.mark.parametrize(("body", "expected"), RECORD_ERRORS, ids=ids(RECORD_ERRORS))
def test_malformed_records_are_invalid_records(body: str, expected: str) -> None:
    [job] = parse_message(body)
    assert isinstance(job, InvalidRecord) and job.index == 0
    assert expected in job.reason and job.reason.startswith("Records[0]")
    error = job.error()
    assert isinstance(error, PermanentError) and error.code == "invalid_message"
    assert str(error) == job.reason


def test_a_body_over_the_limit_is_rejected_before_parsing() -> None:
    body = json.dumps({"text": "x" * MAX_MANIFEST_BYTES})
    with pytest.raises(InvalidMessage, match=f"the limit is {MAX_MANIFEST_BYTES}"):
        parse_message(body)
    wide = json.dumps({"text": "é" * (MAX_MANIFEST_BYTES // 2)}, ensure_ascii=False)  # counted in UTF-8 bytes
    assert len(wide) < MAX_MANIFEST_BYTES
    with pytest.raises(InvalidMessage, match="bytes; the limit"):
        parse_message(wide)
    at_limit = '{"a": "' + "x" * (MAX_MANIFEST_BYTES - 9) + '"}'
    assert len(at_limit) == MAX_MANIFEST_BYTES
    assert parse_message(at_limit) == [InlineManifest(at_limit.encode())]


@pytest.mark.parametrize(
    "body",
    [
        "y" * 100_000,
        "[" + "1," * 50_000 + "1]",
        mutated(lambda r: r["s3"]["object"].update(key="%" + "z" * 50_000)),
        mutated(lambda r: r.update(eventSource="s" * 50_000)),
        sns("n" * 100_000),
    ],
)
def test_errors_echo_at_most_a_short_excerpt(body: str) -> None:
    assert len(reason_of(body)) < 250


def reason_of(body: str) -> str:
    """Why the message, or its only record, is invalid."""
    try:
        [job] = parse_message(body)
    except InvalidMessage as exc:
        return str(exc)
    assert isinstance(job, InvalidRecord)
    return job.reason


# --- properties -------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


def near(*choices: Any) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes any JSON at all: reaches the checks deep in an event."""
    return st.sampled_from(choices) | json_values


fuzzy_records = st.fixed_dictionaries(
    {},
    optional={
        "eventSource": near("aws:s3"),
        "eventVersion": near("2.1", "2", "3.0"),
        "eventName": near("ObjectCreated:Put", "ObjectRemoved:Delete"),
        "eventTime": near(TIME),
        "s3": st.fixed_dictionaries(
            {},
            optional={
                "bucket": st.fixed_dictionaries({}, optional={"name": near(BUCKET, "")}) | json_values,
                "object": st.fixed_dictionaries(
                    {},
                    optional={
                        "key": near("a+b.json", "%zz", "%FF", "") | st.text(),
                        "size": near(1, -1),
                        "eTag": near("e"),
                    },
                )
                | json_values,
            },
        )
        | json_values,
    },
)
fuzzy_eventbridge = st.fixed_dictionaries(
    {"detail-type": near("Object Created", "Object Deleted")},
    optional={
        "source": near("aws.s3"),
        "time": near(TIME),
        "detail": st.fixed_dictionaries(
            {},
            optional={
                "event-version": near("1.0", "2.0"),
                "bucket": st.fixed_dictionaries({}, optional={"name": near(BUCKET)}) | json_values,
                "object": st.fixed_dictionaries({}, optional={"key": st.text(), "size": near(5)}) | json_values,
            },
        )
        | json_values,
    },
)
fuzzy_objects = st.one_of(
    st.fixed_dictionaries({"Records": st.lists(fuzzy_records, max_size=3) | json_values}),
    fuzzy_eventbridge,
    st.fixed_dictionaries({"Event": near("s3:TestEvent")}),
    st.dictionaries(st.text(max_size=12), json_values, max_size=4),
)
fuzzy_bodies = st.one_of(
    st.text(),
    json_values.map(json.dumps),
    fuzzy_objects.map(json.dumps),
    fuzzy_objects.map(lambda inner: sns(json.dumps(inner))),
    st.fixed_dictionaries({"Type": near("Notification"), "Message": near("{}") | st.text()}).map(json.dumps),
)


@settings(max_examples=400, deadline=None)
@given(fuzzy_bodies)
def test_any_body_gives_jobs_or_invalid_message(body: str) -> None:
    """Every body is jobs (a malformed record among them as an InvalidRecord) or one InvalidMessage."""
    try:
        jobs = parse_message(body)
    except InvalidMessage as exc:
        assert exc.code == "invalid_message"
        assert len(str(exc)) < 1000
        return
    assert isinstance(jobs, list)
    assert all(isinstance(job, (ObjectRef, InlineManifest, InvalidRecord)) for job in jobs)
    bad = [job for job in jobs if isinstance(job, InvalidRecord)]
    assert all(len(job.reason) < 1000 for job in bad)
    assert len({job.index for job in bad}) == len(bad), "each bad record has a name of its own"


keys = st.text(
    alphabet=st.characters(exclude_categories=("Cs", "Cc")) | st.sampled_from(" +/%&=?#~"), min_size=1, max_size=60
)
buckets = st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(bucket=buckets, key=keys, slash_safe=st.booleans(), wrapped=st.booleans())
def test_s3_event_keys_round_trip(bucket: str, key: str, slash_safe: bool, wrapped: bool) -> None:
    """AWS encodes with quote_plus(key, safe="/"), moto with quote_plus(key, safe=""): both come back exact."""
    encoded = quote_plus(key, safe="/" if slash_safe else "")
    body = s3_event(record(encoded, bucket=bucket))
    [job] = parse_message(sns(body) if wrapped else body)
    assert job == ObjectRef(bucket, key, "d41d8cd98f00b204e9800998ecf8427e", 120, TIME)


@settings(max_examples=100, deadline=None)
@given(key=keys)
def test_eventbridge_keys_round_trip_unencoded(key: str) -> None:
    [job] = parse_message(eventbridge(key))
    assert isinstance(job, ObjectRef)
    assert job.key == key
