"""Resolve config/config.yaml + environment (.env included) into the choices a run makes."""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from image_batch.common.errors import UserError

KEY_VARIABLES = ("AI_API_KEY", "OPENAI_API_KEY")
# What a job needs from the environment: the API key and endpoint, the bucket, the boto3 credential
# chain's variables. Declared to jobs that run elsewhere (see passed_variables).
JOB_VARIABLES = KEY_VARIABLES + (
    "OPENAI_BASE_URL",
    "S3_BUCKET_NAME",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)


def load_dotenv_file(path=".env"):
    """Load ``.env`` into the environment without overriding variables already set."""
    from dotenv import load_dotenv

    if Path(path).is_file():
        load_dotenv(path, override=False)


def api_key(environ=None):
    """The API key from ``AI_API_KEY`` (or ``OPENAI_API_KEY``); None when unset or blank."""
    environ = os.environ if environ is None else environ
    for name in KEY_VARIABLES:
        value = (environ.get(name) or "").strip()
        if value:
            return value
    return None


SECRET_VARIABLES = KEY_VARIABLES + ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def secrets_in_commands(declared, executor_settings, executor_name, allowed):
    """Why this run must not start, or None: with no shared filesystem, secrets declared with
    ``envvars:`` and an executor that writes those into each job's command line and job script
    (``pass_envvar_declarations_to_cmd``), unless ``allowed`` (config secrets_in_job_commands).
    Jobs run as threads of the local executor have no command line of their own."""
    secrets = sorted(set(declared) & set(SECRET_VARIABLES))
    if allowed or not secrets or executor_settings is None or executor_settings.local_exec:
        return None
    if not executor_settings.pass_envvar_declarations_to_cmd:
        return None  # the executor passes them its own way (a Kubernetes secret, say)
    return (
        f"the {executor_name} executor writes environment variables into every job's command, so "
        f"{', '.join(secrets)} would be in its job scripts. Give the jobs these variables by the "
        "cluster's own means and unset them here, or run with --config secrets_in_job_commands=True "
        "if job scripts are private to you."
    )


def passed_variables(environ=None):
    """The names of JOB_VARIABLES that are set (``.env`` included, once loaded), for ``envvars:``."""
    environ = os.environ if environ is None else environ
    return [name for name in JOB_VARIABLES if (environ.get(name) or "").strip()]


@dataclass(frozen=True)
class Destination:
    """Where the sync stage sends results/images: an S3 bucket, or a local folder when none is set."""

    kind: str  # "s3" or "local"
    location: str  # bucket name, or local folder path
    prefix: str
    endpoint_url: str | None = None

    def describe(self):
        if self.kind == "s3":
            return f"s3://{self.location}/{self.prefix}"
        return f"local folder {self.location}/{self.prefix}"

    def as_dict(self):
        return {"kind": self.kind, "location": self.location, "prefix": self.prefix, "endpoint_url": self.endpoint_url}

    @classmethod
    def read(cls, path):
        """The destination recorded by the main process (results/specs/_destination.json)."""
        with open(path, encoding="utf-8") as handle:
            return cls(**json.load(handle))


@dataclass(frozen=True)
class Settings:
    provider: str  # resolved provider name: "openai" or "offline"
    provider_note: str  # why this provider was chosen, for the log
    destination: Destination


def resolve(config, environ=None):
    """Decide provider and sync destination.  Raises UserError when the combination is unsafe."""
    environ = os.environ if environ is None else environ
    sync_cfg = config.get("sync") or {}
    bucket = (sync_cfg.get("bucket") or environ.get("S3_BUCKET_NAME") or "").strip()
    prefix = (sync_cfg.get("prefix") or "").strip().lstrip("/")
    if ".." in prefix.split("/") or "\\" in prefix:
        raise UserError(f"sync.prefix {prefix!r} is not allowed: use a plain path like 'batches/2026-11/'")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if bucket:
        endpoint = (environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or "").strip() or None
        destination = Destination("s3", bucket, prefix, endpoint)
    else:
        destination = Destination("local", sync_cfg.get("local_destination") or "results/bucket", prefix)

    wanted = config.get("provider", "auto")
    key = api_key(environ)
    if wanted == "auto":
        if key:
            return Settings("openai", "AI_API_KEY is set", destination)
        if bucket:
            raise UserError(
                f"S3_BUCKET_NAME is set ({bucket}) but no API key is: refusing to generate offline "
                "placeholders and upload them. Set AI_API_KEY (in the environment or .env), unset "
                "S3_BUCKET_NAME to work offline, or set provider: offline explicitly in the config."
            )
        return Settings("offline", "no AI_API_KEY set", destination)
    if wanted == "openai" and not key:
        raise UserError("provider is 'openai' but no API key is set: set AI_API_KEY (in the environment or .env).")
    return Settings(wanted, f"provider: {wanted} in config", destination)
