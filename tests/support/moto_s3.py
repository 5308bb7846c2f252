"""moto's S3 server (the ``moto_server`` command) on loopback, for tests and benchmarks."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing-access-key",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key-do-not-leak",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoS3:
    def __init__(self):
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self, timeout=30):
        executable = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
        self.process = subprocess.Popen(
            [executable, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1).read()
                return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("moto_server exited at start")
                time.sleep(0.1)
        raise RuntimeError("moto_server did not start")

    def stop(self):
        if self.process:
            self.process.terminate()
            self.process.wait(10)

    def env(self):
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint_url}

    def client(self):
        return s3_client(self.endpoint_url)

    def reset(self):
        """Forget every bucket (moto's reset API)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=5).read()

    def objects(self, bucket):
        """{key: bytes} of everything in ``bucket``."""
        s3 = self.client()
        out = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                out[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        return out


def s3_client(endpoint_url, config=None):
    """A boto3 S3 client with the test credentials, for moto or a proxy in front of it."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        config=config,
    )


def scrubbed_environ():
    """The test process's environment without anything that would point a run at real services."""
    from tests.support.openai_models import TODAY

    drop = ("AI_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL", "S3_BUCKET_NAME")
    drop += ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_API_VERSION")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("AWS_")}
    # The workflow's clock is the stand-in API's "today": no test depends on the day it runs.
    env["IMAGE_BATCH_TODAY"] = TODAY.isoformat()
    return env
