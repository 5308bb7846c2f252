"""Settings, read once: config/config.yaml (defaults from workflow/schemas/config.schema.yaml, the one place
they live) into a typed, frozen :class:`Settings`; then the environment (``.env`` included) decides the
provider and the sync destination (:func:`resolve` -> :class:`Choices`)."""

import copy
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from image_batch.common.errors import UserError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"
REPO = Path(__file__).resolve().parents[3]
DEFAULT_CATALOG = REPO / "config" / "models.yaml"

KEY_VARIABLES = ("AI_API_KEY", "OPENAI_API_KEY")
# The gemini provider's key, in google-genai's order (the first wins when both are set).
GEMINI_KEY_VARIABLES = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
SECRET_VARIABLES = (
    KEY_VARIABLES + GEMINI_KEY_VARIABLES + ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
)
# What a job needs from the environment: the API key and endpoint, the bucket, the boto3 credential
# chain's variables. Declared to jobs that run elsewhere (see passed_variables).
JOB_VARIABLES = KEY_VARIABLES + (
    "OPENAI_BASE_URL",
    *GEMINI_KEY_VARIABLES,
    "GOOGLE_GEMINI_BASE_URL",
    "S3_BUCKET_NAME",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)


# ---------------------------------------------------------------------------------------------
# The config file, as typed settings


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int
    max_seconds: float
    initial_wait: float
    max_wait: float
    max_unusable: int
    same_error_stop: int


@dataclass(frozen=True)
class BatchSettings:
    poll_seconds: float
    max_lines: int
    max_bytes: int
    max_rounds: int
    completion_window: str


@dataclass(frozen=True)
class SyncSettings:
    prefix: str
    bucket: str
    local_destination: str
    concurrency: int
    retry_mode: str
    max_attempts: int
    delete_removed: bool


@dataclass(frozen=True)
class Settings:
    """Everything config/config.yaml says, with every default filled in from the schema."""

    input_csv: str
    input_sheet: str | None
    csv_delimiter: str
    provider: str  # as configured: auto, openai, offline (or a plugin's name)
    prompt_template: str | None
    context_templates: dict
    max_prompt_chars: int
    variant: str
    mode: str
    batch: BatchSettings
    retry: RetrySettings
    sync: SyncSettings
    response_store: str
    model_catalog: str | None
    image_worker: bool
    secrets_in_job_commands: bool
    progress_seconds: float
    legacy_prices: bool  # an old config file still has a `prices` section (now ignored: see the catalogue)
    sections: dict = field(repr=False)  # per-provider sections, as written: {"openai": {...}}

    def section(self, name):
        """A provider's own section of the config (e.g. ``openai``), a plain dict."""
        return copy.deepcopy(dict(self.sections.get(name) or {}))

    @property
    def catalog_path(self):
        return Path(self.model_catalog) if self.model_catalog else DEFAULT_CATALOG


@functools.lru_cache(maxsize=1)
def _schema():
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def _validator():
    """A validator that also fills in the schema's defaults (nested objects included)."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, props, instance, schema)

    return jsonschema.validators.extend(base, {"properties": properties})(_schema())


def _coerce(value, schema):
    """Values given on the command line (``--config batch="{poll_seconds: 1}"``) may arrive as text:
    the numbers and booleans the schema asks for are read from it."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        return {k: _coerce(v, props.get(k) or {}) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    kinds = schema.get("type") or []
    kinds = [kinds] if isinstance(kinds, str) else kinds
    text = value.strip()
    if "boolean" in kinds and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if "integer" in kinds:
        try:
            return int(text)
        except ValueError:
            pass
    if "number" in kinds:
        try:
            return float(text)
        except ValueError:
            pass
    if "null" in kinds and text.lower() in ("null", "none", "~"):
        return None
    return value


def with_defaults(config):
    """A copy of ``config`` checked against the schema, every default filled in. Raises UserError."""
    config = _coerce(copy.deepcopy(dict(config or {})), _schema())
    errors = sorted(_validator().iter_errors(config), key=lambda e: list(e.path))
    if errors:
        lines = []
        for error in errors[:10]:
            where = ".".join(str(p) for p in error.path) or "(top level)"
            lines.append(f"  config {where}: {error.message}")
        raise UserError("the configuration is not valid:\n" + "\n".join(lines))
    return config


def _frozen(mapping):
    return copy.deepcopy(dict(mapping or {}))


def load_settings(config):
    """The typed settings for ``config`` (a dict as Snakemake or yaml reads config/config.yaml)."""
    c = with_defaults(config)
    known = {"openai", "gemini", "offline"} | {
        k for k, v in c.items() if isinstance(v, dict) and k not in _NOT_SECTIONS
    }
    return Settings(
        input_csv=str(c["input_csv"]),
        input_sheet=c["input_sheet"],
        csv_delimiter=c["csv_delimiter"],
        provider=c["provider"],
        prompt_template=c["prompt_template"],
        context_templates=_frozen(c["context_templates"]),
        max_prompt_chars=int(c["max_prompt_chars"]),
        variant="" if c["variant"] is None else str(c["variant"]),
        mode=c["mode"],
        batch=BatchSettings(**c["batch"]),
        retry=RetrySettings(**c["retry"]),
        sync=SyncSettings(**{**c["sync"], "bucket": c["sync"]["bucket"] or ""}),
        response_store=c["response_store"],
        model_catalog=c["model_catalog"],
        image_worker=bool(c["image_worker"]),
        secrets_in_job_commands=bool(c["secrets_in_job_commands"]),
        progress_seconds=float(c["progress_seconds"]),
        legacy_prices="prices" in (config or {}),
        sections=_frozen({name: c.get(name) or {} for name in known}),
    )


_NOT_SECTIONS = {"batch", "retry", "sync", "context_templates", "prices"}


def read_config_file(path):
    """The config file as a dict (a clear error when it is not YAML)."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot read the configuration: {exc}") from None


# ---------------------------------------------------------------------------------------------
# The environment


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


def gemini_api_key(environ=None):
    """The gemini provider's key: ``GOOGLE_API_KEY``, else ``GEMINI_API_KEY``; None when unset."""
    environ = os.environ if environ is None else environ
    for name in GEMINI_KEY_VARIABLES:
        value = (environ.get(name) or "").strip()
        if value:
            return value
    return None


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
    def from_record(cls, data, path):
        """The destination a record (the plan's destination content, read from ``path``) names: its
        other keys (how to sync) are not the destination's; a clear error when it names none."""
        try:
            return cls(**{k: v for k, v in data.items() if k in ("kind", "location", "prefix", "endpoint_url")})
        except (TypeError, AttributeError):
            raise UserError(f"{path}: the sync destination record is not valid; delete it and run again") from None


@dataclass(frozen=True)
class Choices:
    """What the environment decides for a run: the provider and the sync destination."""

    provider: str  # resolved provider name: "openai", "offline", ...
    provider_note: str  # why this provider was chosen, for the log
    destination: Destination


def destination(settings, environ=None):
    environ = os.environ if environ is None else environ
    bucket = (settings.sync.bucket or environ.get("S3_BUCKET_NAME") or "").strip()
    prefix = (settings.sync.prefix or "").strip().lstrip("/")
    if ".." in prefix.split("/") or "\\" in prefix:
        raise UserError(f"sync.prefix {prefix!r} is not allowed: use a plain path like 'batches/2026-11/'")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if bucket:
        endpoint = (environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or "").strip() or None
        return Destination("s3", bucket, prefix, endpoint)
    return Destination("local", settings.sync.local_destination or "results/bucket", prefix)


def resolve(settings, environ=None):
    """Decide provider and sync destination.  Raises UserError when the combination is unsafe."""
    environ = os.environ if environ is None else environ
    where = destination(settings, environ)
    wanted = settings.provider
    key = api_key(environ)
    if wanted == "auto":
        if key:  # OpenAI's key first when both are set
            return Choices("openai", "AI_API_KEY is set", where)
        if gemini_api_key(environ):
            named = next(n for n in GEMINI_KEY_VARIABLES if (environ.get(n) or "").strip())
            return Choices("gemini", f"{named} is set (and no AI_API_KEY)", where)
        if where.kind == "s3":
            raise UserError(
                f"S3_BUCKET_NAME is set ({where.location}) but no API key is: refusing to generate offline "
                "placeholders and upload them. Set AI_API_KEY (in the environment or .env), unset "
                "S3_BUCKET_NAME to work offline, or set provider: offline explicitly in the config."
            )
        return Choices("offline", "no AI_API_KEY set", where)
    if wanted == "openai" and not key:
        raise UserError("provider is 'openai' but no API key is set: set AI_API_KEY (in the environment or .env).")
    if wanted == "gemini" and not gemini_api_key(environ):
        raise UserError(
            "provider is 'gemini' but no Gemini API key is set: set GEMINI_API_KEY (or GOOGLE_API_KEY) "
            "in the environment or .env."
        )
    return Choices(wanted, f"provider: {wanted} in config", where)
