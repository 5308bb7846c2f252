"""boto3 gets through the flaky proxy to moto's S3 with retries, and the proxy injects the faults it says it does."""

import http.client
from concurrent.futures import ThreadPoolExecutor

import botocore.exceptions
import pytest
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config

from tests.support.flaky_proxy import FlakyProxy
from tests.support.moto_s3 import s3_client

BUCKET = "flaky-proxy-test"
MB = 1024 * 1024


@pytest.fixture
def bucket(s3):
    s3.client().create_bucket(Bucket=BUCKET)  # straight to moto: setup is not under test
    return s3


@pytest.fixture
def proxy(bucket):
    with FlakyProxy(bucket.endpoint_url, fail_rate=0.3, seed=1) as server:
        yield server


def proxied(proxy, max_attempts=10):
    # NB: in a client Config, retries["max_attempts"] counts *retries*: botocore makes max_attempts + 1 attempts.
    return s3_client(proxy.url, Config(retries={"mode": "standard", "max_attempts": max_attempts}))


def payload(index, size=None):
    size = 100 + 37 * index if size is None else size
    return bytes((index * 7 + offset) % 251 for offset in range(size))


def force_trailer_checksums(client):
    """Make botocore send what it sends real S3 over https: an aws-chunked streaming body (Transfer-Encoding:
    chunked, STREAMING-UNSIGNED-PAYLOAD-TRAILER, the CRC32 in a trailer).  Over http it puts the checksum in a
    header, so this flips the checksum location just before botocore applies it."""

    def to_trailer(params, **kwargs):
        algorithm = params["context"].get("checksum", {}).get("request_algorithm")
        if isinstance(algorithm, dict):
            algorithm["in"] = "trailer"

    for operation in ("PutObject", "UploadPart"):
        client.meta.events.register(f"before-call.s3.{operation}", to_trailer)
    return client


def test_uploads_survive_random_faults(proxy, bucket, tmp_path):
    client = proxied(proxy)
    files = {}
    for index in range(40):
        path = tmp_path / f"file-{index}.bin"
        path.write_bytes(payload(index))
        files[f"managed/{index}.bin"] = path
    big = payload(99, 6 * MB)  # multipart: two parts of 5 MB and 1 MB
    (tmp_path / "big.bin").write_bytes(big)
    files["managed/big.bin"] = tmp_path / "big.bin"

    config = TransferConfig(multipart_threshold=5 * MB, multipart_chunksize=5 * MB, max_concurrency=8)
    with create_transfer_manager(client, config) as manager:
        futures = [manager.upload(str(path), BUCKET, key) for key, path in files.items()]
        for future in futures:
            future.result()
    puts = {f"put/{index}": payload(index + 1000) for index in range(20)}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: client.put_object(Bucket=BUCKET, Key=item[0], Body=item[1]), puts.items()))

    stored = bucket.objects(BUCKET)  # read back from moto itself, not through the proxy
    expected = {key: path.read_bytes() for key, path in files.items()} | puts
    assert stored.keys() == expected.keys()
    assert all(stored[key] == data for key, data in expected.items())

    faulted = proxy.count(faulted=True)
    assert (
        faulted > 0
        and proxy.count(faulted="reset") + proxy.count(faulted="500") + proxy.count(faulted="503") == faulted
    )
    assert 0.15 < faulted / len(proxy.requests) < 0.45
    # A faulted request never reaches moto and nothing forwarded failed: each object (multipart: each part)
    # was PUT upstream exactly once.
    assert proxy.count(method="PUT", faulted=False) == 40 + 2 + 20
    for record in proxy.requests:
        assert record["status"] == {"reset": None, "500": 500, "503": 503, None: record["status"]}[record["faulted"]]
        assert record["faulted"] is not None or record["status"] == 200


def test_aws_chunked_streaming_uploads_with_trailers(proxy, bucket, tmp_path):
    client = force_trailer_checksums(proxied(proxy))
    data = {f"chunked/{index}": payload(index, 70_000 + index) for index in range(10)}
    for key, body in data.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    path = tmp_path / "streamed.bin"
    path.write_bytes(payload(5, 300_000))
    client.upload_file(str(path), BUCKET, "chunked/upload_file")
    data["chunked/upload_file"] = path.read_bytes()

    puts = [record for record in proxy.requests if record["method"] == "PUT"]
    assert puts and all(record["chunked"] for record in puts)  # botocore really sent chunked bodies
    for record in puts:
        headers = record["headers"]
        assert headers["content-encoding"] == "aws-chunked" and headers["x-amz-trailer"] == "x-amz-checksum-crc32"
        assert headers["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
        assert int(headers["x-amz-decoded-content-length"]) < record["body_bytes"]  # framing + trailer included
    assert proxy.count(faulted=True) > 0
    stored = bucket.objects(BUCKET)
    assert all(stored[key] == body for key, body in data.items())  # moto decoded the aws-chunked framing
    head = bucket.client().head_object(Bucket=BUCKET, Key="chunked/0", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(data["chunked/0"])


def test_default_put_object_and_upload_file(proxy, bucket, tmp_path):
    client = proxied(proxy)
    path = tmp_path / "plain.bin"
    path.write_bytes(payload(3, 50_000))
    client.upload_file(str(path), BUCKET, "plain/upload_file")
    client.put_object(Bucket=BUCKET, Key="plain/put", Body=b"hello")
    assert client.get_object(Bucket=BUCKET, Key="plain/put")["Body"].read() == b"hello"
    stored = bucket.objects(BUCKET)
    assert stored["plain/upload_file"] == path.read_bytes() and stored["plain/put"] == b"hello"


def test_raw_chunked_request_with_extensions_and_http_trailers(bucket):
    """What boto3 never sends but HTTP allows: chunk extensions and trailer fields after the last chunk."""
    body = b"hello, chunked world"
    with FlakyProxy(bucket.endpoint_url) as proxy:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        conn.putrequest("PUT", f"/{BUCKET}/raw", skip_accept_encoding=True)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader("Trailer", "x-amz-meta-origin")
        conn.endheaders()
        conn.send(
            b"5;note=first\r\nhello\r\n"
            + b"%x\r\n%s\r\n" % (len(body) - 5, body[5:])
            + b"0\r\n"
            + b"x-amz-meta-origin: trailer\r\n\r\n"
        )
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 200
        conn.close()
        assert proxy.requests[0]["chunked"] and proxy.requests[0]["body_bytes"] == len(body)
    head = bucket.client().head_object(Bucket=BUCKET, Key="raw")
    assert head["Metadata"] == {"origin": "trailer"}  # the trailer field went upstream as a header
    assert bucket.objects(BUCKET)["raw"] == body


@pytest.mark.parametrize("mode", ["503", "500", "reset"])
def test_break_after_exhausts_retries_until_healed(bucket, mode):
    with FlakyProxy(bucket.endpoint_url) as proxy:
        client = proxied(proxy, max_attempts=2)
        proxy.break_after(2, mode=mode)
        client.put_object(Bucket=BUCKET, Key="before/1", Body=b"1")
        client.put_object(Bucket=BUCKET, Key="before/2", Body=b"2")
        expected = botocore.exceptions.ConnectionClosedError if mode == "reset" else botocore.exceptions.ClientError
        with pytest.raises(expected) as caught:
            client.put_object(Bucket=BUCKET, Key="broken", Body=b"3")
        if mode != "reset":
            assert caught.value.response["Error"]["Code"] == {"503": "SlowDown", "500": "InternalError"}[mode]
            assert "reached max retries: 2" in str(caught.value)
        assert proxy.count(method="PUT", faulted=mode) == 3  # every attempt failed
        assert proxy.count(faulted=False) == 2

        proxy.heal()
        client.put_object(Bucket=BUCKET, Key="after", Body=b"4")
        assert set(bucket.objects(BUCKET)) == {"before/1", "before/2", "after"}


def test_count_and_arguments(bucket):
    with FlakyProxy(bucket.endpoint_url, fail_rate=1.0, modes=("500",)) as proxy:
        client = proxied(proxy, max_attempts=0)  # a single attempt
        with pytest.raises(botocore.exceptions.ClientError):
            client.head_object(Bucket=BUCKET, Key="missing")  # HEAD errors carry no body
        proxy.set_fail_rate(0.0)
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            client.head_object(Bucket=BUCKET, Key="missing")  # forwarded: moto's own 404
        assert caught.value.response["Error"]["Code"] == "404"
        assert proxy.count() == 2 and proxy.count(method="head") == 2
        assert proxy.count(faulted=True) == proxy.count(faulted="500") == 1 and proxy.count(faulted=False) == 1
        assert [record["status"] for record in proxy.requests] == [500, 404]
        proxy.reset()
        assert proxy.requests == []
    with pytest.raises(ValueError):
        FlakyProxy(bucket.endpoint_url, modes=("teapot",))
    with pytest.raises(ValueError):
        FlakyProxy(bucket.endpoint_url, fail_rate=2)
