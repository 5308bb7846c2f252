"""A quiet console: a run shows Image.Batch's own lines (banner, plan, estimate, progress, one line
per failure, summary) and Snakemake's warnings and errors, not its job blocks; ``--verbose`` shows
everything, and Snakemake's log file keeps everything."""

SNAKEMAKE_NOISE = ("localrule ", "jobid:", "steps (", "Select jobs to execute", "Building DAG", "Job stats", "reason:")


def sheet(n):
    return "image_id,context,description\n" + "".join(f"img{i:03d},Context {i % 4},a calm lake {i}\n" for i in range(n))


def console(runner, n, *args):
    (runner.root / "input.csv").write_text(sheet(n))
    result = runner.snakemake("--config", "input_csv=input.csv", *args)
    return result.output.splitlines()


def noise(lines):
    return [line for line in lines if any(part in line for part in SNAKEMAKE_NOISE)]


def test_a_run_prints_its_own_lines_and_none_of_snakemakes_job_blocks(runner):
    lines = console(runner, 6)
    assert noise(lines) == [], "\n".join(lines)
    assert any("OFFLINE MODE" in line for line in lines)
    assert any(line.startswith("Image.Batch: estimate:") for line in lines)
    assert any(line.startswith("Image.Batch: summary of run") for line in lines)
    # Snakemake's own log keeps every job block
    (log,) = (runner.root / ".snakemake/log").glob("*.snakemake.log")
    assert "localrule generate_image" in log.read_text() and "steps (100%) done" in log.read_text()


def test_the_console_does_not_grow_with_the_number_of_images(runner):
    small = console(runner, 4)
    runner.snakemake("--config", "input_csv=input.csv")  # nothing to do: settle
    large = console(runner, 40)
    assert noise(large) == [] and len(large) <= len(small) + 2, "\n".join(large)


def test_a_dry_run_is_quiet_too_and_verbose_shows_everything(runner):
    (runner.root / "input.csv").write_text(sheet(5))
    dry = runner.snakemake("-n", "--config", "input_csv=input.csv").output.splitlines()
    assert noise(dry) == [] and any("This was a dry-run" in line for line in dry)
    verbose = runner.snakemake("-n", "--verbose", "--config", "input_csv=input.csv").output
    assert verbose.count("rule generate_image:") == 5 and "Job stats" in verbose


def test_an_unreachable_endpoint_is_said_once_not_per_image(runner):
    """A wrong OPENAI_BASE_URL (nothing listens there): one line says so while the images retry, not
    one per image, and the run ends with each image failed, no traceback."""
    from tests.conftest import API_KEY
    from tests.support.moto_s3 import free_port

    (runner.root / "input.csv").write_text(sheet(4))
    runner.env.update(AI_API_KEY=API_KEY, OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1")
    result = runner.snakemake("--config", "input_csv=input.csv", check=False)
    assert result.returncode != 0 and "Traceback" not in result.output, result.output[-3000:]
    said = [line for line in result.output.splitlines() if "cannot reach the API" in line]
    assert len(said) == 1 and "OPENAI_BASE_URL" in said[0], result.output[-3000:]
