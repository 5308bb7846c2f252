#!/usr/bin/env bash
# The lock files, made with uv from the top-level pins, for Linux x86_64 (glibc >= 2.28) and
# CPython 3.11, the platform of the Dockerfile, CI and the conda environment:
#   requirements.txt     -> requirements.lock      what running needs
#   requirements-dev.txt -> requirements-dev.lock  tests and checks, compiled with requirements.lock
#                                                  as a constraint: shared packages keep its versions
# Every package, transitive ones too, is pinned with the hashes of all its files on the index, so
# `pip install --require-hashes -r requirements.lock` installs exactly these files or nothing.
#
# Usage (from anywhere in the repository):
#   scripts/lock.sh            after editing a pin: re-resolve, keeping every other locked version
#   scripts/lock.sh --upgrade  also move the transitive packages to the newest versions allowed
#   scripts/lock.sh --check    offline, no uv needed (CI runs it): the locks hold every top-level
#                              pin, hash every package, agree with each other, keep the test tools
#                              out of the runtime lock and name no index or local path
# Regenerating needs uv (0.13.8 made these; `pip install uv`) and the package index (PyPI or a
# mirror set in uv's own config; the lock files never record which).
set -euo pipefail
cd "$(dirname "$0")/.."

check() {
    python3 - <<'EOF'
import re
import sys
from pathlib import Path


def name(text):
    return re.sub(r"[-_.]+", "-", text.split("[")[0]).lower()


def pins(path):
    """name -> version of every `name==version` line of a requirements file, following -r."""
    found = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            found.update(pins(Path(path).parent / line[3:].strip()))
        elif "==" in line:
            package, version = line.split("==")
            found[name(package)] = version.split(";")[0].strip(" \\")
    return found


problems = []


def locked(path):
    """name -> version of a lock file, and the names of packages with no hash."""
    versions, unhashed = {}, []
    entries = re.split(r"\n(?=\S)", Path(path).read_text())
    for entry in entries:
        if entry.startswith("#") or not entry.strip():
            continue
        if "==" not in entry.split()[0]:
            problems.append(f"{path}: not a pinned package: {entry.splitlines()[0]}")
            continue
        package, version = entry.split()[0].split("==")
        versions[name(package)] = version
        if "--hash=sha256:" not in entry:
            unhashed.append(package)
    return versions, unhashed


runtime, runtime_unhashed = locked("requirements.lock")
dev, dev_unhashed = locked("requirements-dev.lock")
for lock, unhashed in (("requirements.lock", runtime_unhashed), ("requirements-dev.lock", dev_unhashed)):
    problems += [f"{lock}: {package} has no hash" for package in unhashed]
    text = Path(lock).read_text()
    for bad in ("file:", "--index-url", "--extra-index-url", "--find-links", "/opt/", "/tmp/", "/home/", "/work/"):
        if bad in text:
            problems.append(f"{lock}: names an index or a local path ({bad!r})")
for source, lock, versions in (
    ("requirements.txt", "requirements.lock", runtime),
    ("requirements-dev.txt", "requirements-dev.lock", dev),
):
    for package, version in pins(source).items():
        if versions.get(package) != version:
            problems.append(f"{lock}: {package} is {versions.get(package)}, {source} pins {version}: run scripts/lock.sh")
for package, version in runtime.items():
    if dev.get(package) != version:
        problems.append(f"requirements-dev.lock: {package} is {dev.get(package)}, requirements.lock has {version}")
for package in ("pytest", "moto", "snakefmt", "ruff", "black", "cfn-lint"):
    if package in runtime:
        problems.append(f"requirements.lock: {package} is a test tool, not needed to run")
if problems:
    sys.exit("\n".join(problems))
print(f"locks OK: {len(runtime)} packages to run, {len(dev)} with tests and checks, versions agree")
EOF
}

compile() {  # compile SOURCE LOCK DESCRIPTION [extra uv args...]
    local source=$1 lock=$2 description=$3
    shift 3
    local command=(uv pip compile "$source" "$@" --generate-hashes --python-version 3.11
        --python-platform x86_64-manylinux_2_28 --no-header -o "$lock")
    "${command[@]}" ${UPGRADE:+--upgrade} --quiet
    {
        echo "# $description"
        echo "# Every version pinned, with hashes. Target: Linux x86_64 (glibc >= 2.28), CPython 3.11."
        echo "# Install: pip install --require-hashes -r $lock"
        echo "# Made from $source by scripts/lock.sh, which runs (uv 0.13.8):"
        echo "#   ${command[*]}"
        echo "# Do not edit: change $source, then run scripts/lock.sh."
        cat "$lock"
    } >"$lock.new"
    mv "$lock.new" "$lock"
}

case "${1:-}" in
--check)
    check
    ;;
--upgrade | "")
    UPGRADE=$([ "${1:-}" = --upgrade ] && echo 1 || true)
    compile requirements.txt requirements.lock "Image.Batch: what running needs."
    compile requirements-dev.txt requirements-dev.lock \
        "Image.Batch: tests and checks, a superset of requirements.lock with the same versions." \
        -c requirements.lock
    check
    ;;
*)
    echo "usage: scripts/lock.sh [--upgrade | --check]" >&2
    exit 2
    ;;
esac
