"""A local stand-in for a cluster scheduler, for snakemake-executor-plugin-cluster-generic.

Each job script Snakemake submits runs as its own detached process (its own Snakemake, as on a
cluster node); ``submit`` prints a job id at once, ``status`` answers running/success/failed.

    submit [--scratch SOURCES] JOBSCRIPT   (the plugin appends the job script)
    status JOBID

With ``--scratch SOURCES`` a job runs as in a Kubernetes pod: in a fresh folder holding only a
copy of the workflow's sources (the project without results/, .snakemake/ or the response store),
with an environment that has nothing of the submitting process's but PATH (this Python's first),
HOME and LANG. So a run
with ``--shared-fs-usage none`` and a storage provider proves that every file a job reads or writes
goes through its declared inputs and outputs, and every variable it needs through ``envvars:``.
Job state (stdout/stderr, exit code, scratch folders) lives in ``$LOCAL_CLUSTER_DIR``.
Standard library only; nothing is sent anywhere.
"""

import argparse
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

NOT_SOURCES = ("results", ".snakemake", "response-store", ".env", "__pycache__")


def state_dir():
    path = Path(os.environ.get("LOCAL_CLUSTER_DIR") or ".local-cluster").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def submit(jobscript, scratch=None):
    state = state_dir()
    job_id = f"local-{uuid.uuid4().hex[:12]}"
    cwd, env = Path.cwd(), None
    if scratch:
        cwd = state / job_id / "work"
        shutil.copytree(scratch, cwd, symlinks=True, ignore=shutil.ignore_patterns(*NOT_SOURCES))
        env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
        # the job runs `python -m snakemake`: this Python's, as a container image would have it
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    # the job script stays where Snakemake wrote it (it may hold the variables declared with
    # `envvars:`; Snakemake removes its folder when the run ends): no copy of it is made here
    with open(state / f"{job_id}.out", "wb") as out:
        subprocess.Popen(
            [
                "bash",
                "-c",
                'bash "$1"; echo $? > "$2.part" && mv "$2.part" "$2"',
                "job",
                str(Path(jobscript).resolve()),
                str(state / f"{job_id}.rc"),
            ],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # detached, like a batch job: the submit command returns now
        )
    print(job_id)


def status(job_id):
    try:
        code = (state_dir() / f"{job_id}.rc").read_text().strip()
    except FileNotFoundError:
        print("running")
        return
    print("success" if code == "0" else "failed")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sub = commands.add_parser("submit")
    sub.add_argument("--scratch", default=None, help="run in a fresh copy of this folder's sources")
    sub.add_argument("jobscript")
    stat = commands.add_parser("status")
    stat.add_argument("job_id")
    args = parser.parse_args(argv)
    if args.command == "submit":
        submit(args.jobscript, args.scratch)
    else:
        status(args.job_id)


if __name__ == "__main__":
    sys.exit(main())
