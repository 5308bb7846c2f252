"""A row removed from the sheet: its image is reported, kept by default, and with
sync.delete_removed removed from the destination (never from the response store); the marker
lists only what the sheet asks for."""

import json

import pytest

from tests.conftest import API_KEY, update_config
from tests.support.fake_openai import FakeOpenAI

ROWS = [("fox", "Nature", "a red fox"), ("owl", "Nature", "an owl"), ("cup", "Kitchen", "a blue cup")]


def sheet(rows):
    return "image_id,context,description\n" + "".join(f"{i},{c},{d}\n" for i, c, d in rows)


@pytest.fixture
def user(runner, s3):
    with FakeOpenAI(api_key=API_KEY) as api:
        runner.env.update(s3.env(), AI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url, S3_BUCKET_NAME="shop")
        s3.client().create_bucket(Bucket="shop")
        (runner.root / "mine.csv").write_text(sheet(ROWS))
        runner.api = api
        yield runner


def marker(s3):
    return json.loads(s3.client().get_object(Bucket="shop", Key="batch/_SUCCESS.json")["Body"].read())


def test_a_removed_row_is_reported_then_removed_with_the_option(user, s3):
    update_config(user.root, sync={"prefix": "batch"})
    for key in ("batch/notes/readme.txt", "batch/assets/logo.png", "batch/2026-11/_SUCCESS.json"):
        s3.client().put_object(Bucket="shop", Key=key, Body=b"not ours")
    user.snakemake("--config", "input_csv=mine.csv")
    assert {k for k in s3.objects("shop") if k.endswith(".png") and "/assets/" not in k} == {
        "batch/nature/fox.png",
        "batch/nature/owl.png",
        "batch/kitchen/cup.png",
    }
    (user.root / "mine.csv").write_text(sheet(ROWS[:2]))  # the cup row is gone

    kept = user.snakemake("--config", "input_csv=mine.csv")
    assert "1 image(s) in results/images no row asks for any more (e.g. kitchen/cup)" in kept.output
    assert "removed rows: 1 image(s) in the destination no row asks for any more" in kept.output
    assert "batch/kitchen/cup.png" in s3.objects("shop")  # off by default, like aws s3 sync
    listed = marker(s3)
    assert {o["key"] for o in listed["objects"]} == {
        "batch/nature/fox.png",
        "batch/nature/fox.json",
        "batch/nature/owl.png",
        "batch/nature/owl.json",
    }
    assert listed["removed"]["listed"] == 2 and listed["removed"]["deleted"] == 0
    assert listed["cost"]["images"] == 2

    update_config(user.root, sync={"prefix": "batch", "delete_removed": True})
    user.api.reset()
    user.snakemake("--config", "input_csv=mine.csv")
    objects = s3.objects("shop")
    assert "batch/kitchen/cup.png" not in objects and "batch/kitchen/cup.json" not in objects
    for key in ("batch/notes/readme.txt", "batch/assets/logo.png", "batch/2026-11/_SUCCESS.json"):
        assert key in objects  # not put there by this workflow: never touched, whatever its shape
    assert marker(s3)["removed"]["deleted"] == 2 and user.api.calls == []
    stored = [p for p in (user.root / "response-store").glob("??/*.json")]
    assert len(stored) == 3  # the response store keeps every answer

    (user.root / "mine.csv").write_text(sheet(ROWS))  # the row comes back: free, from the store
    user.snakemake("--config", "input_csv=mine.csv")
    assert "batch/kitchen/cup.png" in s3.objects("shop") and user.api.paid_calls == []
