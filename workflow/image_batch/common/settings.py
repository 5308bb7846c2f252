"""Settings, read once: config/config.yaml (defaults from workflow/schemas/config.schema.yaml, the one place
they live) into a typed, frozen :class:`Settings`; then the environment (``.env`` included) decides the
provider and the sync destination (:func:`resolve` -> :class:`Choices`)."""

import copy
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from image_batch.common.errors import UserError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"
REPO = Path(__file__).resolve().parents[3]
DEFAULT_CATALOG = REPO / "config" / "models.yaml"
CONFIG_FILE = "config/config.yaml"  # as messages name it

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
    abandon: bool = False


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
class DescribeSettings:
    """``describe``: prompts written by a model (off while ``model`` is None)."""

    model: str | None = None
    provider: str | None = None  # None: the image provider's
    instructions: str = ""
    contexts: dict = field(default_factory=dict)  # context or folder -> instructions

    @property
    def on(self):
        return bool(self.model)


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
    describe: DescribeSettings
    legacy_prices: bool  # an old config file still has a `prices` section (now ignored: see the catalogue)
    sections: dict = field(repr=False)  # per-provider sections, as written: {"openai": {...}}
    command_line: dict = field(default_factory=dict, repr=False)  # what --config gave
    config_file: str = CONFIG_FILE
    variants: int = 1  # images per row unless its variants cell says (descriptions.row_settings)

    def origin(self, *path):
        """Where the setting at ``path`` came from: "given on the command line" (--config, or
        main.py's options) or "in <config file>"."""
        return origin(list(path), self.command_line, self.config_file)

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


def config_file_name(configfiles=()):
    """The config file a run read, as the user would name it: the last ``--configfile`` (relative to
    the current folder when inside it), else config/config.yaml."""
    if not configfiles:
        return CONFIG_FILE
    path = Path(configfiles[-1])
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def origin(path, command_line=None, config_file=CONFIG_FILE):
    """Where the setting at ``path`` (keys from the top) came from: ``--config`` when the command
    line set it (or a section above it), else the config file."""
    given = command_line or {}
    for key in path:
        if not isinstance(given, Mapping) or key not in given:
            return f"in {config_file}"
        given = given[key]
        if not isinstance(given, Mapping):
            break
    return "given on the command line"


def _allowed(value):
    return "null" if value is None else repr(value) if isinstance(value, str) and not value.strip() else str(value)


def _fix(error):
    """What to do about one schema ``error``: the values, range or shape the schema takes."""
    schema, kind = error.schema, error.validator
    hint = f" ({schema['description']})" if isinstance(schema, dict) and schema.get("description") else ""
    if kind == "enum":
        return "use one of: " + ", ".join(_allowed(v) for v in error.validator_value) + hint
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        above = f"above {low}" if "exclusiveMinimum" in schema else f"at least {low}"
        if low is not None and high is not None:
            return f"use a value from {low} to {high}{hint}"
        return f"use a value {above}{hint}" if low is not None else f"use a value up to {high}{hint}"
    if kind == "type":
        kinds = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        words = {"integer": "a whole number", "number": "a number", "string": "text", "boolean": "true or false"}
        words.update({"object": "a mapping (key: value)", "null": "null", "array": "a list"})
        return "use " + " or ".join(words.get(k, k) for k in kinds) + hint
    if kind == "pattern":
        return f"use the form {schema.get('description') or error.validator_value}"
    if kind == "additionalProperties":
        import difflib

        known = sorted(schema.get("properties") or {})
        unknown = [k for k in error.instance if k not in known]
        near = [difflib.get_close_matches(k, known, n=1) for k in unknown]
        guesses = [
            repr(m[0]) if len(unknown) == 1 else f"{m[0]!r} for {k!r}" for k, m in zip(unknown, near, strict=True) if m
        ]
        mean = f"did you mean {', '.join(guesses)}? " if guesses else ""
        return f"{mean}(the keys taken here: {', '.join(known)})"
    if kind == "minLength":
        return "give a value, or leave the key out for its default"
    return "see config/README.md"


def _problem(error, command_line, config_file):
    path = list(error.path)
    if error.validator == "additionalProperties":
        known = (error.schema.get("properties") or {}) if isinstance(error.schema, dict) else {}
        unknown = [k for k in error.instance if k not in known]
        path = path + unknown[:1]
        what = f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
        return f"config {'.'.join(map(str, path))}: {what} ({origin(path, command_line, config_file)}); {_fix(error)}"
    where = ".".join(str(p) for p in path) or "(top level)"
    message = error.message
    if error.validator == "enum":
        message = f"{error.instance!r} is not a value it takes"
    elif error.validator == "pattern":
        message = f"{error.instance!r} is not of the right form"
    return f"config {where}: {message} ({origin(path, command_line, config_file)}); {_fix(error)}"


# Rules across settings, each with its fix: the API refuses the request otherwise.
def _cross_problems(config, command_line, config_file):
    problems = []
    openai = config.get("openai") or {}
    fmt = openai.get("output_format")
    if openai.get("output_compression") is not None and fmt not in ("jpeg", "webp"):
        problems.append(
            "config openai.output_compression: the API takes it only with output_format jpeg or webp, not "
            f"{fmt or 'png (the default)'} ({origin(['openai', 'output_compression'], command_line, config_file)}); "
            "set openai.output_format to jpeg or webp, or openai.output_compression to null"
        )
    # extra_body is merged into the body last: it must not carry a field set (and checked) elsewhere,
    # nor one that changes what is paid for (n: images per request, stream: the answer's form)
    owned = set(_schema()["properties"]["openai"]["properties"]) | {"prompt", "n", "stream", "response_format"}
    clash = sorted(set(openai.get("extra_body") or {}) & owned)
    if clash:
        names = ", ".join(clash)
        problems.append(
            f"config openai.extra_body: sets {names}, which the workflow sets itself and checks "
            f"({origin(['openai', 'extra_body'], command_line, config_file)}); remove "
            + ("them" if len(clash) > 1 else "it")
            + " from extra_body"
            + "".join(f"; set openai.{n} instead" for n in clash if n in openai)
        )
    return problems


def _unknown_top_level(config, command_line, config_file):
    """A line for each top-level key that is neither a setting nor the section of an installed
    provider plugin (which takes its own settings), with a guess at what was meant."""
    import difflib

    props = _schema()["properties"]
    unknown = [key for key in config if key not in props]
    if not unknown:
        return []
    from image_batch.plugins import providers

    unknown = [key for key in unknown if key not in providers()]
    # a guess among the settings and the keys of their sections (modle -> openai.model)
    names = {name: name for name in props}
    for section, sub in props.items():
        for name in sub.get("properties") or {}:
            names.setdefault(name, f"{section}.{name}")
    lines = []
    for key in unknown:
        near = difflib.get_close_matches(str(key), list(names), n=2)
        guess = f"did you mean {' or '.join(repr(names[n]) for n in near)}? " if near else ""
        lines.append(
            f"config {key}: unknown key {key!r} ({origin([key], command_line, config_file)}); {guess}the settings "
            "are listed in config/README.md (a provider plugin's section is named after the provider)"
        )
    return lines


def with_defaults(config, command_line=None, config_file=CONFIG_FILE):
    """A copy of ``config`` checked against the schema, every default filled in. Raises UserError,
    one line per problem naming the setting, where it came from (``command_line``: the settings
    given with ``--config``; else ``config_file``) and the fix."""
    config = _coerce(copy.deepcopy(dict(config or {})), _schema())
    errors = sorted(_validator().iter_errors(config), key=lambda e: list(map(str, e.path)))
    lines = _unknown_top_level(config, command_line, config_file)
    lines += [_problem(error, command_line, config_file) for error in errors[: max(0, 10 - len(lines))]]
    if not lines:
        lines = _cross_problems(config, command_line, config_file)
    if lines:
        raise UserError("the configuration is not valid:\n" + "\n".join(f"  {line}" for line in lines))
    return config


def _frozen(mapping):
    return copy.deepcopy(dict(mapping or {}))


def load_settings(config, command_line=None, config_file=CONFIG_FILE):
    """The typed settings for ``config`` (a dict as Snakemake or yaml reads config/config.yaml);
    ``command_line``: what ``--config`` gave (named as such in messages)."""
    c = with_defaults(config, command_line, config_file)
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
        describe=DescribeSettings(**{**c["describe"], "contexts": _frozen(c["describe"]["contexts"])}),
        legacy_prices="prices" in (config or {}),
        sections=_frozen({name: c.get(name) or {} for name in known}),
        command_line=_frozen(command_line),
        config_file=config_file,
        variants=int(c["variants"]),
    )


_NOT_SECTIONS = {"batch", "retry", "sync", "context_templates", "prices", "describe"}


def read_config_file(path):
    """The config file as a dict (a clear error when it is not YAML)."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot read the configuration: {exc}") from None


# ---------------------------------------------------------------------------------------------
# The environment


def load_dotenv_file(path=".env"):
    """Load ``.env`` into the environment without overriding variables already set. A ``.env`` that
    cannot be read or is not UTF-8 text (Windows Notepad saves UTF-16) is a UserError naming the fix."""
    import io

    from dotenv import load_dotenv

    path = Path(path)
    if not path.is_file():
        return
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(
            f"{path} cannot be read ({exc.strerror}): make it readable by the user running the workflow "
            f'(chmod u+r {path}; sudo chown "$(id -u)" {path} if another user made it), or remove it'
        ) from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or (b"\x00" in data[:200] and data.strip(b"\x00")):
        raise UserError(
            f"{path} is UTF-16 text (as Windows Notepad saves it), not UTF-8: save it as UTF-8 (Notepad: "
            "File > Save as, Encoding: UTF-8) and run again"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(
            f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}; saved as Windows-1252?): "
            "save it as UTF-8 and run again"
        ) from None
    load_dotenv(stream=io.StringIO(text), override=False)


def _first_set(names, environ=None):
    """(name, value) of the first of ``names`` set (not blank) in ``environ``, or (None, None)."""
    environ = os.environ if environ is None else environ
    for name in names:
        value = (environ.get(name) or "").strip()
        if value:
            return name, value
    return None, None


def api_key(environ=None):
    """The API key from ``AI_API_KEY`` (or ``OPENAI_API_KEY``); None when unset or blank."""
    return _first_set(KEY_VARIABLES, environ)[1]


def gemini_api_key(environ=None):
    """The gemini provider's key: ``GOOGLE_API_KEY``, else ``GEMINI_API_KEY``; None when unset."""
    return _first_set(GEMINI_KEY_VARIABLES, environ)[1]


# each paid provider's key: how it is read, and the variable(s) a message tells the user to set
PROVIDER_KEYS = {"openai": (api_key, "AI_API_KEY"), "gemini": (gemini_api_key, "GEMINI_API_KEY (or GOOGLE_API_KEY)")}


def unset_key(provider, environ=None):
    """The variable(s) to set when ``provider`` needs a key that is not set, else None."""
    found = PROVIDER_KEYS.get(provider)
    return found[1] if found and not found[0](environ) else None


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
    # a paid provider chosen in the config with no key set: planned, checked and priced (a dry run,
    # an estimate), but a real run stops before any job, naming the variable to set
    missing_key: str | None = None
    # with no key, the provider a key would choose: the estimate prices it, its settings are checked
    keyless_paid: str | None = None


def destination(settings, environ=None):
    environ = os.environ if environ is None else environ
    bucket = (settings.sync.bucket or environ.get("S3_BUCKET_NAME") or "").strip()
    prefix = (settings.sync.prefix or "").strip().lstrip("/")
    if ".." in prefix.split("/") or "\\" in prefix:
        raise UserError(f"sync.prefix {prefix!r} is not allowed: use a plain path like 'batches/2026-11/'")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if bucket:
        from image_batch.sync.preflight import check_name  # the name first: the fix the user needs first

        problem = check_name(bucket)
        if problem:
            raise UserError(problem)
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
        named, _ = _first_set(GEMINI_KEY_VARIABLES, environ)
        if named:
            return Choices("gemini", f"{named} is set (and no AI_API_KEY)", where)
        if where.kind == "s3":
            raise UserError(
                f"S3_BUCKET_NAME is set ({where.location}) but no API key is: refusing to generate offline "
                "placeholders and upload them. Set AI_API_KEY (in the environment or .env), unset "
                "S3_BUCKET_NAME to work offline, or set provider: offline explicitly in the config."
            )
        return Choices("offline", "no AI_API_KEY set", where, keyless_paid="openai")
    # "in config/config.yaml" or "given on the command line" (--config provider=..., main.py --set)
    given = settings.origin("provider") if hasattr(settings, "origin") else "in config"
    from image_batch.plugins import provider_class

    provider_class(wanted, f"provider {given}")  # an unknown name: one line, with a guess
    if wanted == "openai" and not key:
        return Choices(
            wanted, f"provider: openai {given}, but NO API KEY is set", where, missing_key=MISSING_KEY["openai"]
        )
    if wanted == "gemini" and not gemini_api_key(environ):
        return Choices(
            wanted, f"provider: gemini {given}, but NO API KEY is set", where, missing_key=MISSING_KEY["gemini"]
        )
    return Choices(wanted, f"provider: {wanted} {given}", where)


MISSING_KEY = {
    "openai": "provider is 'openai' but no API key is set: set AI_API_KEY (in the environment or .env); "
    "a real run stops before any image",
    "gemini": "provider is 'gemini' but no Gemini API key is set: set GEMINI_API_KEY (or GOOGLE_API_KEY) "
    "in the environment or .env; a real run stops before any image",
}
