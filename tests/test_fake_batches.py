"""The fake's Files and Batch APIs answer the real openai client the way the real API does."""

import base64
import io
import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from openai import OpenAI
from PIL import Image

from tests.support.fake_openai import FakeOpenAI, expected_color

ENDPOINT = "/v1/images/generations"
MODEL = "gpt-image-2.5-sunburst"  # the workflow's default model
BATCH_EXPIRED = {
    "code": "batch_expired",
    "message": "This request could not be executed before the completion window expired.",
}


@pytest.fixture
def srv():
    with FakeOpenAI(api_key="sk-test", fixed_created=1_700_000_000) as server:
        yield server


@pytest.fixture
def client(srv):
    return OpenAI(api_key="sk-test", base_url=srv.base_url, max_retries=0, timeout=10)


def request(custom_id, prompt, **body):
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": ENDPOINT,
        "body": {"model": MODEL, "prompt": prompt, "size": "1024x1024", **body},
    }


def jsonl(*requests):
    return "".join(json.dumps(item) + "\n" for item in requests).encode()


def upload(client, data, name="input.jsonl", purpose="batch"):
    return client.files.create(file=(name, data), purpose=purpose)


def submit(client, *requests, **options):
    """Upload ``requests`` and create their batch; the new Batch."""
    uploaded = upload(client, jsonl(*requests))
    return client.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h", **options)


def lines(client, file_id):
    """The parsed lines of an output / error file ([] when the batch has none)."""
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def prompts(n, stem="prompt"):
    return [request(f"r{index}", f"{stem} {index}") for index in range(n)]


def test_round_trip_upload_create_poll_download(srv, client):
    data = jsonl(request("fox", "a red fox"), request("whale", "a blue whale", quality="high", n=2))
    uploaded = upload(client, data)
    assert uploaded.id.startswith("file-") and uploaded.object == "file" and uploaded.bytes == len(data)
    assert (uploaded.filename, uploaded.purpose, uploaded.status) == ("input.jsonl", "batch", "processed")
    assert uploaded.expires_at == uploaded.created_at + 30 * 24 * 3600
    assert client.files.retrieve(uploaded.id) == uploaded
    assert client.files.content(uploaded.id).content == data

    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h", metadata={"run": "42"}
    )
    assert batch.id.startswith("batch_") and batch.status == "validating" and batch.metadata == {"run": "42"}
    assert batch.expires_at == batch.created_at + 24 * 3600 and batch.output_file_id is None
    assert (batch.request_counts.total, batch.request_counts.completed) == (0, 0)

    done = client.batches.retrieve(batch.id)  # batch_polls_to_complete defaults to 1
    assert done.status == "completed" and done.model == MODEL and done.errors is None
    assert done.in_progress_at and done.finalizing_at and done.completed_at and done.error_file_id is None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (2, 2, 0)
    # 1024x1024 image tokens (research §4): medium 1756, high 7024; text: ceil(characters / 4) = 3 and 3.
    assert done.usage.output_tokens == 1756 + 2 * 7024 and done.usage.total_tokens == 3 + 3 + 1756 + 2 * 7024
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"

    out = {line["custom_id"]: line for line in lines(client, done.output_file_id)}
    assert set(out) == {"fox", "whale"}
    for custom_id, prompt, n in (("fox", "a red fox", 1), ("whale", "a blue whale", 2)):
        line = out[custom_id]
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200 and line["response"]["request_id"].startswith("req_")
        data_items = line["response"]["body"]["data"]
        assert len(data_items) == n
        image = Image.open(io.BytesIO(base64.b64decode(data_items[0]["b64_json"])))
        assert image.convert("RGB").getpixel((5, 5)) == expected_color(prompt)
    assert out["whale"]["response"]["body"]["quality"] == "high"

    assert srv.batches_created == [batch.id] and [f["id"] for f in srv.uploaded_files] == [uploaded.id]
    assert srv.batch_lines_answered == 2 and len(srv.batch_paid_lines) == 2
    assert srv.batch_stats()["cost"] == 1.0 and srv.batch_stats()["good_paid"] == 2
    # Batch traffic never counts as live calls.
    assert srv.calls == [] and srv.paid_calls == [] and srv.stats()["calls"] == 0
    assert {call["path"].split("/")[2] for call in srv.batch_requests} == {"files", "batches"}
    assert not any(call["paid"] for call in srv.batch_requests)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"quality": "low", "output_format": "jpeg", "size": "1536x1024"},
        {"n": 3, "background": "transparent", "output_format": "webp"},
    ],
)
def test_batch_body_is_the_live_body(srv, client, params):
    prompt = "a lighthouse at dusk"
    live = client.images.with_raw_response.generate(model=MODEL, prompt=prompt, **params)
    batch = submit(
        client,
        {
            "custom_id": "x",
            "method": "POST",
            "url": ENDPOINT,
            "body": {"model": MODEL, "prompt": prompt, **params},
        },
    )
    [line] = lines(client, client.batches.retrieve(batch.id).output_file_id)
    assert line["response"]["body"] == live.http_response.json()
    assert len(srv.paid_calls) == 1 and len(srv.batch_paid_lines) == 1


def test_created_is_the_answer_time_without_fixed_created():
    with FakeOpenAI(api_key="sk-test") as server:
        client = OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0, timeout=10)
        live = client.images.with_raw_response.generate(model=MODEL, prompt="a kite").http_response.json()
        batch = submit(
            client,
            {"custom_id": "k", "method": "POST", "url": ENDPOINT, "body": {"model": MODEL, "prompt": "a kite"}},
        )
        [line] = lines(client, client.batches.retrieve(batch.id).output_file_id)
    body = line["response"]["body"]
    assert abs(body.pop("created") - live.pop("created")) <= 5 and body == live


def test_errors_go_to_the_error_file_with_the_live_answer(srv, client):
    srv.set_behavior("forbidden", "moderation")
    srv.set_behavior("shaky", "server_error")
    srv.set_behavior("hangs up", "reset")
    srv.set_behavior("garbled", "not_image")
    srv.fail_times("twice", "overloaded", 1)
    batch = submit(
        client,
        request("ok", "a calm sea"),
        request("mod", "a forbidden thing"),
        request("shaky", "a shaky bridge"),
        request("reset", "it hangs up"),
        request("garbled", "garbled data"),
        request("first", "twice told"),
        request("second", "twice told"),
        {"custom_id": "noprompt", "method": "POST", "url": ENDPOINT, "body": {"model": MODEL}},
    )
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed"
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (8, 3, 5)

    out = {line["custom_id"]: line for line in lines(client, done.output_file_id)}
    errors = {line["custom_id"]: line for line in lines(client, done.error_file_id)}
    assert set(out) == {"ok", "garbled", "second"}  # not_image is a paid 200 with bad data, as live
    assert set(errors) == {"mod", "shaky", "reset", "first", "noprompt"}
    mod = errors["mod"]
    assert mod["error"] is None and mod["id"].startswith("batch_req_")
    assert mod["response"]["status_code"] == 400 and mod["response"]["request_id"].startswith("req_")
    assert mod["response"]["body"]["error"]["code"] == "moderation_blocked"
    assert mod["response"]["body"]["error"]["type"] == "image_generation_user_error"
    assert errors["shaky"]["response"]["status_code"] == 500
    assert errors["reset"]["response"]["status_code"] == 500  # no answer at all becomes a server error line
    assert errors["first"]["response"]["status_code"] == 503  # fail_times is used up by the batch line
    assert errors["noprompt"]["response"]["body"]["error"]["code"] == "missing_required_parameter"

    by_id = {line["custom_id"]: line for line in srv.batch_lines}
    assert by_id["mod"]["behavior"] == "moderation" and by_id["mod"]["status"] == 400 and not by_id["mod"]["paid"]
    assert by_id["first"]["rule"] == "fail_times" and by_id["noprompt"]["behavior"] is None
    stats = srv.batch_stats()
    assert (stats["paid"], stats["good_paid"], stats["errors"]) == (3, 2, 5)
    assert srv.stats()["calls"] == 0


def test_expired_batch_keeps_the_first_k_lines_and_lists_the_rest_as_expired(srv, client):
    srv.expire_batches_after_lines = 2
    batch = submit(client, *prompts(5))
    done = client.batches.retrieve(batch.id)
    assert done.status == "expired" and done.expired_at and done.completed_at is None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (5, 2, 3)
    assert sorted(line["custom_id"] for line in lines(client, done.output_file_id)) == ["r0", "r1"]
    expired = lines(client, done.error_file_id)
    assert sorted(line["custom_id"] for line in expired) == ["r2", "r3", "r4"]
    assert all(line["response"] is None and line["error"] == BATCH_EXPIRED for line in expired)
    assert srv.batch_lines_answered == 2 and srv.batch_stats()["unrun"] == 3

    again = client.batches.retrieve(submit(client, *prompts(3, "more")).id)  # still set: the next one expires too
    assert again.status == "expired" and again.request_counts.completed == 2
    srv.expire_batches_after_lines = None
    assert client.batches.retrieve(submit(client, *prompts(3, "last")).id).status == "completed"


def test_expiry_after_more_lines_than_the_batch_has_completes_it(srv, client):
    srv.expire_batches_after_lines = 5
    done = client.batches.retrieve(submit(client, *prompts(3)).id)
    assert done.status == "completed" and done.error_file_id is None


def test_batch_moves_on_one_step_per_retrieve(srv, client):
    srv.batch_polls_to_complete = 3
    batch = submit(client, *prompts(4))
    assert client.batches.retrieve(batch.id).status == "in_progress"
    assert srv.batch(batch.id)["request_counts"] == {"total": 4, "completed": 2, "failed": 0}
    assert [b.status for b in client.batches.list()] == ["in_progress"]  # listing does not move batches on
    finalizing = client.batches.retrieve(batch.id)
    assert finalizing.status == "finalizing" and finalizing.request_counts.completed == 4
    assert finalizing.output_file_id is None and finalizing.finalizing_at
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed" and len(lines(client, done.output_file_id)) == 4
    assert client.batches.retrieve(batch.id) == done  # a finished batch stays as it is


def test_polls_are_read_when_the_batch_is_created():
    with FakeOpenAI(api_key="sk-test", batch_polls_to_complete=2) as server:
        client = OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0, timeout=10)
        batch = submit(client, *prompts(2))
        server.batch_polls_to_complete = 1
        assert [client.batches.retrieve(batch.id).status for _ in range(2)] == ["finalizing", "completed"]


def test_list_pages_newest_first(client):
    ids = [submit(client, *prompts(1, f"p{index}")).id for index in range(5)]
    page = client.batches.with_raw_response.list(limit=2).http_response.json()
    assert page["object"] == "list" and [b["id"] for b in page["data"]] == ids[:2:-1][:2] == [ids[4], ids[3]]
    assert (page["first_id"], page["last_id"], page["has_more"]) == (ids[4], ids[3], True)
    last = client.batches.with_raw_response.list(limit=2, after=ids[1]).http_response.json()
    assert [b["id"] for b in last["data"]] == [ids[0]] and last["has_more"] is False
    assert [b.id for b in client.batches.list(limit=2)] == ids[::-1]  # the client follows the cursor
    with pytest.raises(openai.BadRequestError):
        client.batches.list(limit=101)


def test_cancel(srv, client):
    srv.batch_polls_to_complete = 3
    batch = submit(client, *prompts(4))
    client.batches.retrieve(batch.id)  # 2 of 4 lines answered
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    assert client.batches.cancel(batch.id).status == "cancelling"
    done = client.batches.retrieve(batch.id)
    assert done.status == "cancelled" and done.cancelled_at
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 2)
    assert sorted(line["custom_id"] for line in lines(client, done.output_file_id)) == ["r0", "r1"]
    cancelled = lines(client, done.error_file_id)
    assert sorted((line["custom_id"], line["error"]["code"], line["response"]) for line in cancelled) == [
        ("r2", "batch_cancelled", None),
        ("r3", "batch_cancelled", None),
    ]
    with pytest.raises(openai.BadRequestError, match="Cannot cancel a batch with status 'cancelled'"):
        client.batches.cancel(batch.id)

    fresh = submit(client, *prompts(2, "fresh"))  # cancelled before it started: nothing ran, no files
    client.batches.cancel(fresh.id)
    gone = client.batches.retrieve(fresh.id)
    assert gone.status == "cancelled" and gone.output_file_id is None and gone.error_file_id is None
    assert srv.batch_lines_answered == 2


GOOD = request("a", "fine")
BAD_FILES = {
    "invalid_json": (b'{"custom_id": "a", ', "invalid_json_line", 1, None),
    "missing_custom_id": (
        jsonl({k: v for k, v in GOOD.items() if k != "custom_id"}),
        "missing_required_parameter",
        1,
        "custom_id",
    ),
    "missing_body": (
        jsonl(GOOD, {k: v for k, v in request("b", "x").items() if k != "body"}),
        "missing_required_parameter",
        2,
        "body",
    ),
    "duplicate_custom_id": (jsonl(GOOD, request("b", "x"), request("a", "y")), "duplicate_custom_id", 3, "custom_id"),
    "method": (jsonl({**GOOD, "method": "GET"}), "invalid_value", 1, "method"),
    "url": (jsonl(GOOD, {**request("b", "x"), "url": "/v1/chat/completions"}), "url_mismatch", 2, "url"),
    "body_not_object": (jsonl({**GOOD, "body": "a prompt"}), "invalid_value", 1, "body"),
    "two_models": (jsonl(GOOD, request("b", "x", model="gpt-image-2")), "model_mismatch", 2, "body.model"),
    "empty": (b"", "empty_file", None, "input_file_id"),
    "blank_line": (jsonl(GOOD) + b"\n" + jsonl(request("b", "x")), "invalid_json_line", 2, None),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_input_file_fails_the_batch(srv, client, name):
    data, code, line, param = BAD_FILES[name]
    uploaded = upload(client, data)
    batch = client.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h")
    assert batch.status == "validating"
    failed = client.batches.retrieve(batch.id)
    assert failed.status == "failed" and failed.failed_at and failed.errors.object == "list"
    error = failed.errors.data[0]
    assert (error.code, error.line, error.param) == (code, line, param) and error.message
    assert failed.output_file_id is None and failed.error_file_id is None and failed.request_counts.total == 0
    assert srv.batch_lines_answered == 0


def test_every_bad_line_is_reported(client):
    batch = submit(client, request("a", "x"), {**request("b", "y"), "method": "PUT"}, request("a", "z"))
    assert [(e.code, e.line) for e in client.batches.retrieve(batch.id).errors.data] == [
        ("invalid_value", 2),
        ("duplicate_custom_id", 3),
    ]


def test_batch_limits(srv, client):
    srv.batch_max_lines = 2
    failed = client.batches.retrieve(submit(client, *prompts(3)).id)
    assert failed.status == "failed" and failed.errors.data[0].code == "too_many_tasks"
    assert client.batches.retrieve(submit(client, *prompts(2)).id).status == "completed"
    srv.batch_max_bytes = 100
    assert client.batches.retrieve(submit(client, *prompts(2)).id).errors.data[0].code == "file_too_large"


def test_input_file_must_exist_and_be_for_batches(client):
    missing = client.batches.create(input_file_id="file-nope", endpoint=ENDPOINT, completion_window="24h")
    error = client.batches.retrieve(missing.id).errors.data[0]
    assert (error.code, error.param) == ("invalid_input_file", "input_file_id") and "file-nope" in error.message
    other = upload(client, jsonl(GOOD), purpose="user_data")
    wrong = client.batches.create(input_file_id=other.id, endpoint=ENDPOINT, completion_window="24h")
    assert "purpose 'batch'" in client.batches.retrieve(wrong.id).errors.data[0].message


@pytest.mark.parametrize(
    "changes, param",
    [
        ({"endpoint": "/v1/chat/completions"}, "endpoint"),  # real, but the fake answers image generations only
        ({"endpoint": "/v1/nope"}, "endpoint"),
        ({"completion_window": "48h"}, "completion_window"),
        ({"input_file_id": None}, "input_file_id"),
        ({"metadata": {f"k{index}": "v" for index in range(17)}}, "metadata"),
        ({"metadata": {"k": "v" * 513}}, "metadata"),
    ],
)
def test_bad_create_parameters_are_400(srv, client, changes, param):
    params = {
        "input_file_id": upload(client, jsonl(GOOD)).id,
        "endpoint": ENDPOINT,
        "completion_window": "24h",
        **changes,
    }
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(**params)
    assert caught.value.body["param"] == param
    assert srv.batches_created == []


def test_upload_refusals_and_auth(srv, client):
    with pytest.raises(openai.BadRequestError, match=r"Must be \.jsonl"):
        upload(client, jsonl(GOOD), name="input.txt")
    with pytest.raises(openai.BadRequestError, match="purpose"):
        upload(client, jsonl(GOOD), purpose="nonsense")
    stranger = OpenAI(api_key="sk-wrong-key-000", base_url=srv.base_url, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.batches.list()
    with pytest.raises(openai.AuthenticationError):
        upload(stranger, jsonl(GOOD))
    assert srv.uploaded_files == []


def test_files_list_delete_and_unknown_ids(srv, client):
    first, second = upload(client, jsonl(GOOD)), upload(client, jsonl(GOOD), purpose="user_data")
    assert [f.id for f in client.files.list()] == [second.id, first.id]
    assert [f.id for f in client.files.list(purpose="batch")] == [first.id]
    deleted = client.files.delete(first.id)
    assert deleted.deleted and deleted.id == first.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content("file-nope")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")
    with pytest.raises(openai.NotFoundError):
        client.batches.cancel("batch_nope")


def test_input_is_read_at_create(client):
    uploaded = upload(client, jsonl(GOOD))
    batch = client.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h")
    client.files.delete(uploaded.id)
    assert client.batches.retrieve(batch.id).status == "completed"


def test_injected_faults_before_and_after(srv, client):
    uploaded = upload(client, jsonl(GOOD))
    create = {"input_file_id": uploaded.id, "endpoint": ENDPOINT, "completion_window": "24h"}
    srv.fail_next("batch_create")
    with pytest.raises(openai.InternalServerError):
        client.batches.create(**create)
    assert srv.batches_created == []  # refused before anything happened

    srv.fail_next("batch_create", "reset", after=True)
    with pytest.raises(openai.APIConnectionError):
        client.batches.create(**create)
    [lost] = srv.batches_created  # made, though the client never heard of it
    assert [b.id for b in client.batches.list()] == [lost]

    srv.fail_next("batch_retrieve", "overloaded")
    with pytest.raises(openai.InternalServerError) as caught:
        client.batches.retrieve(lost)
    assert caught.value.status_code == 503
    assert srv.batch(lost)["status"] == "validating"  # the refused poll did not count
    assert client.batches.retrieve(lost).status == "completed"
    assert [call.get("batch_fault") for call in srv.batch_requests if call.get("batch_fault")] == [
        "server_error",
        "reset",
        "overloaded",
    ]


def test_client_retries_through_a_failed_poll(srv):
    client = OpenAI(api_key="sk-test", base_url=srv.base_url, max_retries=2, timeout=10)
    batch = submit(client, GOOD)
    srv.fail_next("batch_retrieve", "bad_gateway")
    srv.fail_next("file_content", "server_error")
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed" and len(lines(client, done.output_file_id)) == 1


def test_fail_next_rejects_unknown_arguments(srv):
    with pytest.raises(ValueError):
        srv.fail_next("batch_explode")
    with pytest.raises(ValueError):
        srv.fail_next("batch_create", "ok")


def test_output_is_out_of_input_order_by_default_and_keeps_every_line(srv, client):
    for n in (2, 20):  # never in input order, not even by chance with two lines
        done = client.batches.retrieve(submit(client, *prompts(n, f"n{n}")).id)
        ids = [line["custom_id"] for line in lines(client, done.output_file_id)]
        assert sorted(ids) == sorted(f"r{index}" for index in range(n)) and ids != [f"r{i}" for i in range(n)]
    srv.shuffle_batch_output = False
    done = client.batches.retrieve(submit(client, *prompts(5, "ordered")).id)
    assert [line["custom_id"] for line in lines(client, done.output_file_id)] == [f"r{i}" for i in range(5)]


def test_lines_given_up_on_and_forgotten_batches(srv, client):
    srv.fail_batch_lines("prompt 1", "request_timeout")
    done = client.batches.retrieve(submit(client, *prompts(3)).id)
    [failed] = lines(client, done.error_file_id)
    assert failed["response"] is None and failed["error"]["code"] == "request_timeout"
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 1) and srv.batch_stats()["paid"] == 2
    srv.forget_batch(done.id)
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve(done.id)


def test_url_behaviour_line_points_at_a_served_image(srv, client):
    srv.set_behavior("linked", "url")
    done = client.batches.retrieve(submit(client, request("u", "a linked image")).id)
    [line] = lines(client, done.output_file_id)
    with urllib.request.urlopen(line["response"]["body"]["data"][0]["url"], timeout=10) as answer:
        image = Image.open(io.BytesIO(answer.read()))
    assert image.convert("RGB").getpixel((1, 1)) == expected_color("a linked image")


def test_reset_clears_the_batch_log_but_keeps_batches(srv, client):
    batch = submit(client, GOOD)
    client.batches.retrieve(batch.id)
    srv.reset()
    assert srv.batch_lines == [] and srv.batch_requests == [] and srv.batch_stats()["lines"] == 0
    assert client.batches.retrieve(batch.id).status == "completed"


def test_batch_lines_use_no_rate_limit_slots():
    with FakeOpenAI(api_key="sk-test", rate_limit_per_minute=1) as server:
        client = OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0, timeout=10)
        done = client.batches.retrieve(submit(client, *prompts(3)).id)
        assert done.request_counts.completed == 3
        client.images.generate(model=MODEL, prompt="live after the batch")  # the one slot is still free


def test_concurrent_polls_answer_each_line_once(srv, client):
    batch = submit(client, *prompts(6))
    with ThreadPoolExecutor(8) as pool:
        statuses = set(pool.map(lambda _: client.batches.retrieve(batch.id).status, range(8)))
    assert statuses == {"completed"} and srv.batch_lines_answered == 6
    assert len(lines(client, srv.batch(batch.id)["output_file_id"])) == 6


# -- lines follow the real API of the server's "today" ----------------------------------------------------------------


def test_lines_with_a_retired_model_get_the_live_400(srv, client):
    live = client.images.with_raw_response  # the same request live, for its answer
    with pytest.raises(openai.BadRequestError) as caught:
        live.generate(model="gpt-image-1", prompt="an old model", size="1024x1024")
    retired = [request(f"r{index}", f"an old model {index}", model="gpt-image-1") for index in range(2)]
    done = client.batches.retrieve(submit(client, *retired).id)
    assert done.status == "completed" and done.model == "gpt-image-1" and done.output_file_id is None
    assert (done.request_counts.completed, done.request_counts.failed) == (0, 2)
    errors = lines(client, done.error_file_id)
    assert [line["response"]["status_code"] for line in errors] == [400, 400]
    assert all(line["response"]["body"] == caught.value.response.json() for line in errors)
    error = errors[0]["response"]["body"]["error"]
    assert (error["code"], error["param"]) == ("invalid_value", "model")
    assert error["message"].startswith("Invalid value: 'gpt-image-1'. Supported values are: 'gpt-image-1-mini', ")
    assert srv.batch_stats()["paid"] == 0


def test_lines_are_validated_and_billed_per_model(srv, client):
    srv.set_behavior("forbidden", "moderation")
    done = client.batches.retrieve(
        submit(
            client,
            request("xhigh", "fine detail", quality="xhigh"),
            request("odd", "odd size", size="1792x936"),
            request("complex", "planned", complexity="low"),
            request("mod", "a forbidden thing"),
            request("auto", "defaults", size="auto", quality="auto"),
        ).id
    )
    out = {line["custom_id"]: line["response"]["body"] for line in lines(client, done.output_file_id)}
    errors = {line["custom_id"]: line["response"] for line in lines(client, done.error_file_id)}
    assert set(out) == {"xhigh", "auto"} and set(errors) == {"odd", "complex", "mod"}
    assert out["xhigh"]["usage"]["output_tokens"] == 15804  # 1024x1024 at the assumed xhigh factor 144
    assert out["xhigh"]["usage"]["input_tokens"] == 3  # ceil(len("fine detail") / 4)
    assert (out["auto"]["size"], out["auto"]["quality"], out["auto"]["usage"]["output_tokens"]) == (
        "1024x1024",
        "medium",
        1756,
    )
    assert errors["odd"]["body"]["error"]["message"] == (
        "Invalid size '1792x936'. Width and height must both be divisible by 16."
    )
    assert errors["complex"]["body"]["error"]["code"] == "unknown_parameter"  # 2.5 takes no complexity
    moderation = errors["mod"]["body"]["error"]
    assert moderation["code"] == "moderation_blocked" and errors["mod"]["request_id"] in moderation["message"]
    assert done.usage.output_tokens == 15804 + 1756 and done.usage.input_tokens == 3 + 2


def test_complexity_lines_on_2_6(client):
    planned = [request(c, f"plan {c}", model="gpt-image-2.6-flare", complexity=c) for c in ("low", "high")]
    done = client.batches.retrieve(submit(client, *planned).id)
    assert done.request_counts.completed == 2 and done.usage.output_tokens == 2 * 1756
