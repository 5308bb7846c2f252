"""The sync destination is checked before any image is made: a bad bucket name in every dry run,
missing credentials, a missing bucket and a bucket that refuses writes in a real run, before the
first paid call; each one line with its fix, never a traceback."""

import pytest

from image_batch.common.settings import Destination
from image_batch.sync import preflight
from tests.conftest import API_KEY

SHEET = "image_id,context,description\n" + "".join(f"img{i},Nature,a red fox number {i}\n" for i in range(3))


@pytest.mark.parametrize(
    "name, problem",
    [
        ("my-bucket", None),
        ("my.bucket.2026", None),
        ("s3://my-bucket", "set the bucket's name only (S3_BUCKET_NAME=my-bucket)"),
        ("s3://my-bucket/batches/", "S3_BUCKET_NAME=my-bucket"),
        ("my-bucket/batches", "sync.prefix: batches/"),
        ("my bucket", "holds a space"),
        ("My-Bucket", "bucket names are lowercase"),
        ("ab", "not a valid bucket name"),
        ("a" * 64, "not a valid bucket name"),
        ("bad..name", "not a valid bucket name"),
        ("-bucket", "not a valid bucket name"),
        ("192.168.1.1", "IP address"),
    ],
)
def test_bucket_names_are_checked_with_the_fix(name, problem):
    found = preflight.check_name(name)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def project(keyed, s3, bucket, create=True):
    keyed.env.update(s3.env(), S3_BUCKET_NAME=bucket)
    if create:
        s3.client().create_bucket(Bucket=bucket)
    (keyed.root / "input.csv").write_text(SHEET)
    return keyed


def one_clear_line(result, text):
    assert result.returncode != 0, result.output[-3000:]
    assert "Traceback" not in result.output, result.output[-3000:]
    lines = [line for line in result.output.splitlines() if text in line]
    assert len(lines) == 1, result.output[-3000:]
    return lines[0]


@pytest.mark.parametrize("bucket", ["s3://shop", "my shop"])
def test_a_bad_bucket_name_stops_every_dry_run(keyed, api, s3, bucket):
    user = project(keyed, s3, bucket, create=False)
    result = user.snakemake("-n", "--config", "input_csv=input.csv", check=False)
    one_clear_line(result, f"S3_BUCKET_NAME={bucket!r}")
    result = user.main("input.csv")
    one_clear_line(result, f"S3_BUCKET_NAME={bucket!r}")
    assert api.calls == [] and not list(user.root.glob("results/images/*/*.png"))


def test_a_missing_bucket_stops_the_run_before_any_image(keyed, api, s3):
    user = project(keyed, s3, "not-made", create=False)
    result = user.snakemake("--config", "input_csv=input.csv", check=False)
    line = one_clear_line(result, "bucket not-made does not exist")
    assert "nothing was made" in line
    assert api.calls == [] and not list(user.root.glob("results/images/*/*.png"))
    # a dry run computes only: it does not reach for the bucket
    assert user.snakemake("-n", "--config", "input_csv=input.csv").returncode == 0


def test_no_credentials_warn_a_dry_run_and_stop_a_real_run(keyed, api, s3, tmp_path):
    user = project(keyed, s3, "shop")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        user.env.pop(name, None)
    # nothing else in boto3's chain: no files, no instance metadata (never reach for 169.254.169.254)
    user.env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    dry = user.snakemake("-n", "--config", "input_csv=input.csv")
    assert "no AWS credentials found for the bucket shop" in dry.output and "Traceback" not in dry.output
    result = user.snakemake("--config", "input_csv=input.csv", check=False)
    one_clear_line(result, "no AWS credentials found for the bucket shop")
    assert api.calls == [] and not list(user.root.glob("results/images/*/*.png"))


def test_a_good_bucket_is_probed_and_no_probe_object_is_left(keyed, api, s3):
    user = project(keyed, s3, "shop")
    user.snakemake("--config", "input_csv=input.csv")
    keys = set(s3.objects("shop"))
    assert "_SUCCESS.json" in keys and len(api.paid_calls) == 3
    assert not [key for key in keys if preflight.PROBE_PREFIX in key]


class Refusing:
    """An S3 client whose calls fail as botocore raises them."""

    def __init__(self, fail_on, code, status):
        self.fail_on, self.code, self.status = fail_on, code, status
        self.calls = []

    def _call(self, name, **kwargs):
        from botocore.exceptions import ClientError

        self.calls.append(name)
        if name == self.fail_on:
            error = {"Error": {"Code": self.code, "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": self.status}}
            raise ClientError(error, name)
        return {}

    def head_bucket(self, **kwargs):
        return self._call("head_bucket", **kwargs)

    def list_objects_v2(self, **kwargs):
        return self._call("list_objects_v2", **kwargs)

    def put_object(self, **kwargs):
        return self._call("put_object", **kwargs)

    def delete_object(self, **kwargs):
        return self._call("delete_object", **kwargs)


DEST = Destination("s3", "shop", "batches/")


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")


@pytest.mark.parametrize(
    "fail_on, code, status, text",
    [
        ("head_bucket", "403", 403, "not allowed to read bucket shop"),
        ("put_object", "AccessDenied", 403, "not allowed to write to bucket shop"),
        ("head_bucket", "InvalidAccessKeyId", 403, "credentials were refused"),
        ("head_bucket", "PermanentRedirect", 301, "AWS_DEFAULT_REGION"),
    ],
)
def test_each_refusal_has_its_own_fix(credentials, fail_on, code, status, text):
    client = Refusing(fail_on, code, status)
    with pytest.raises(Exception) as caught:
        preflight.probe(DEST, client)
    assert text in str(caught.value) and "nothing was made" in str(caught.value)


def test_a_probe_object_that_cannot_be_deleted_is_said_unless_deleting_is_needed(credentials):
    note = preflight.probe(DEST, Refusing("delete_object", "AccessDenied", 403))
    assert "not allowed to delete from bucket shop" in note and "batches/.image-batch-probe-" in note
    with pytest.raises(Exception, match="not allowed to delete from bucket shop"):
        preflight.probe(DEST, Refusing("delete_object", "AccessDenied", 403), delete_needed=True)


def test_the_api_key_is_not_in_any_message(credentials):
    with pytest.raises(Exception) as caught:
        preflight.probe(DEST, Refusing("head_bucket", "NoSuchBucket", 404))
    assert API_KEY not in str(caught.value) and "bucket shop does not exist" in str(caught.value)


def test_a_bad_bucket_name_is_said_first_even_without_a_key(runner):
    """The name is the first thing to fix: said before 'a bucket but no key'."""
    (runner.root / "input.csv").write_text(SHEET)
    runner.env.update(S3_BUCKET_NAME="s3://shop")
    result = runner.snakemake("-n", "--config", "input_csv=input.csv", check=False)
    line = one_clear_line(result, "S3_BUCKET_NAME='s3://shop'")
    assert "S3_BUCKET_NAME=shop" in line and "no API key" not in result.output
