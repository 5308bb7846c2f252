"""The sync destination, checked before any image is made.

A mistake about the bucket should cost nothing: not surface at the sync step, after every image has
been paid for. So:

- planning (every dry run included) checks what needs no network: the bucket's name
  (:func:`check_name`) and whether boto3 finds credentials at all (:func:`find_credentials`; a dry run
  only warns, a real run stops);
- a real run, before its first job (``onstart``), probes the bucket (:func:`probe`): it exists and
  answers, and a small object can be written under the sync prefix and deleted again (no write is
  left behind). Each failure is one line with its own fix.
"""

import ipaddress
import re
import uuid

from image_batch.common.errors import UserError

PROBE_PREFIX = ".image-batch-probe-"
REFUSED = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "TokenRefreshRequired")
_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def check_name(bucket):
    """None if ``bucket`` is a valid S3 bucket name, else what is wrong with it and the fix."""
    where = f"S3_BUCKET_NAME={bucket!r}"
    if bucket.lower().startswith(("s3://", "s3a://", "https://", "http://")):
        name = bucket.split("://", 1)[1].split("/", 1)[0]
        return f"{where} is a URL: set the bucket's name only (S3_BUCKET_NAME={name}) and a prefix with sync.prefix"
    if "/" in bucket:
        name, prefix = bucket.split("/", 1)
        return f"{where} holds a '/': set the bucket's name only (S3_BUCKET_NAME={name}) and sync.prefix: {prefix}/"
    if any(c.isspace() for c in bucket):
        return f"{where} holds a space: bucket names are lowercase letters, digits, '.' and '-' only"
    if not _NAME.match(bucket) or ".." in bucket or ".-" in bucket or "-." in bucket:
        hint = " (bucket names are lowercase)" if bucket != bucket.lower() else ""
        return (
            f"{where} is not a valid bucket name{hint}: 3 to 63 lowercase letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    try:
        ipaddress.ip_address(bucket)
    except ValueError:
        return None
    return f"{where} is an IP address, not a bucket name"


def find_credentials(session=None):
    """The credentials boto3's standard chain finds (environment, AWS_PROFILE, ~/.aws, SSO, the
    instance's role ...), or None."""
    import boto3

    session = session or boto3.session.Session()
    try:
        return session.get_credentials()
    except Exception:  # a broken profile or config file: the probe reports it with the fix
        return None


NO_CREDENTIALS = (
    "no AWS credentials found for the bucket {bucket}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(environment or .env), or AWS_PROFILE, or run `aws configure`"
)


def check_planned(destination):
    """Planning's check (no network): a bad bucket name stops every run and dry run (UserError);
    missing credentials are returned as a note for a run that does not act (a dry run says it at
    its end; a real run's :func:`probe` stops on them before any image)."""
    if destination.kind != "s3":
        return None
    problem = check_name(destination.location)
    if problem:
        raise UserError(problem)
    if find_credentials() is None:
        return NO_CREDENTIALS.format(bucket=destination.location) + "; a real run would stop before any image"
    return None


def _error_code(error):
    response = getattr(error, "response", None) or {}
    return str((response.get("Error") or {}).get("Code") or ""), (response.get("ResponseMetadata") or {}).get(
        "HTTPStatusCode"
    )


def explain(error, destination, action):
    """One line for a failed S3 call of the probe (or the sync): what it means and the fix."""
    from botocore import exceptions as bx

    bucket = destination.location
    endpoint = f" at {destination.endpoint_url}" if destination.endpoint_url else ""
    if isinstance(error, bx.NoCredentialsError | bx.PartialCredentialsError):
        return NO_CREDENTIALS.format(bucket=bucket)
    if isinstance(error, bx.ProfileNotFound):
        return f"AWS_PROFILE names a profile that does not exist ({error}): fix AWS_PROFILE or ~/.aws/config"
    if isinstance(error, bx.EndpointConnectionError | bx.ConnectTimeoutError | bx.ReadTimeoutError):
        return f"cannot reach S3{endpoint} to {action} bucket {bucket} ({type(error).__name__}): check the network" + (
            " and AWS_ENDPOINT_URL" if destination.endpoint_url else " and AWS_DEFAULT_REGION"
        )
    if isinstance(error, bx.ClientError):
        code, status = _error_code(error)
        if code in ("NoSuchBucket", "404", "NotFound"):
            return f"bucket {bucket} does not exist{endpoint}: create it, or fix S3_BUCKET_NAME"
        if code in REFUSED:
            return (
                f"the AWS credentials were refused ({code}) for bucket {bucket}: check AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
            )
        if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
            return (
                f"the AWS credentials found are not allowed to {action} bucket {bucket} ({code}): grant "
                "s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on it, or use other credentials"
            )
        if code in ("PermanentRedirect", "301", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"):
            return f"bucket {bucket} is in another region ({code}): set AWS_DEFAULT_REGION to the bucket's region"
        return f"S3 refused to {action} bucket {bucket}: {code or status} {error}"
    if isinstance(error, bx.BotoCoreError):
        return f"could not {action} bucket {bucket}{endpoint}: {error}"
    return f"could not {action} bucket {bucket}{endpoint}: {type(error).__name__}: {error}"


def probe(destination, client=None, delete_needed=False, retry_mode="standard", max_attempts=3):
    """A real run's check before its first job: the bucket answers, and an object can be written
    under the sync prefix and deleted again. Raises UserError (one line, with the fix); returns a
    note when something is left to say (a probe object that could not be deleted)."""
    if destination.kind != "s3":
        return None
    problem = check_name(destination.location)
    if problem:
        raise UserError(problem)
    if client is None:
        import boto3
        from botocore.config import Config

        retries = {"mode": retry_mode, "total_max_attempts": max_attempts}
        client = boto3.session.Session().client("s3", config=Config(retries=retries))
    bucket = destination.location
    key = f"{destination.prefix}{PROBE_PREFIX}{uuid.uuid4().hex}"
    action = "read"
    try:
        if find_credentials() is None:
            raise UserError(NO_CREDENTIALS.format(bucket=bucket) + " (nothing was made)")
        try:
            client.head_bucket(Bucket=bucket)
        except Exception as error:
            if _error_code(error)[0] not in ("403", "Forbidden"):
                raise
            # A HEAD answer has no body: a wrong key and a missing permission both say only "403"
            # (the advice was to grant permissions for a key S3 did not know). A listing's answer
            # names which: InvalidAccessKeyId, SignatureDoesNotMatch or AccessDenied.
            client.list_objects_v2(Bucket=bucket, MaxKeys=1)
            raise
        action = "write to"
        client.put_object(Bucket=bucket, Key=key, Body=b"", ContentType="application/octet-stream")
        action = "delete from"
        client.delete_object(Bucket=bucket, Key=key)
    except UserError:
        raise
    except Exception as error:
        line = explain(error, destination, action)
        if action == "delete from" and not delete_needed:
            return f"{line} (the test object s3://{bucket}/{key} was left there: delete it by hand)"
        raise UserError(f"{line} (checked before any image: nothing was made)") from None
    return None
