# Image.Batch in a container: the packages of requirements.lock only (hashes checked, no test
# tools), the code in /opt/image-batch, and /app, the folder you mount (sheet, optional config/ and
# .env), where results/, .snakemake/ and response-store/ are written. Run it as yourself so that
# what it writes is yours (README, "Docker"):
#   docker build -t image-batch .
#   docker run --rm --user "$(id -u):$(id -g)" -v "$(pwd)":/app image-batch input.csv
#   docker run --rm --user "$(id -u):$(id -g)" -v "$(pwd)":/app image-batch --report report.html
FROM python:3.11-slim

# Any uid may run this image (`--user`), and an arbitrary uid has no home directory and no name:
# HOME and the caches (Snakemake's source cache, pip's) point at /tmp, which every user can write,
# and USER names the user for Snakemake (getpass.getuser() fails for a uid with no passwd entry).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    USER=image-batch

WORKDIR /opt/image-batch
COPY requirements.lock .
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

COPY . .

# The default user when no --user is given: not root. /app belongs to it for runs without a mount.
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin image-batch \
    && mkdir /app \
    && chown image-batch:image-batch /app
USER 10001:10001

# Snakemake's working directory is the current one: .snakemake/ and results/ land in /app.
WORKDIR /app
ENTRYPOINT ["python", "/opt/image-batch/main.py"]
