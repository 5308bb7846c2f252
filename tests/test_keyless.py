"""Before a key: the estimate prices the paid model a key would use, and its settings are checked;
a paid provider chosen in the config with no key plans and prices, and a real run stops before any
image with one line."""

from image_batch.costs.estimate import money_each

SHEET = "image_id,context,description\na1,Nature,a fox\na2,Nature,an owl\na3,City,a tram\n"


def test_the_estimate_without_a_key_prices_the_model_a_key_would_use(runner):
    (runner.root / "input.csv").write_text(SHEET)
    done = runner.main("input.csv", "--estimate")
    assert done.returncode == 0, done.output[-3000:]
    lines = [line for line in done.output.splitlines() if line.startswith("Image.Batch:")]
    assert any("with the offline generator: no cost" in line for line in lines)
    keyed = next(line for line in lines if "with an API key (openai" in line)
    assert "3 to pay for: about $" in keyed and "$0.00 live" not in keyed
    assert any("3 x gpt-image-2.5-sunburst medium 1024x1024 at about $0.0" in line for line in lines)
    assert not (runner.root / "results/images").exists()


def test_a_retired_model_is_caught_before_a_key_is_bought(runner):
    (runner.root / "input.csv").write_text(SHEET)
    done = runner.main("input.csv", "--estimate", "--model", "gpt-image-1")
    assert done.returncode == 0 and "Traceback" not in done.output
    warned = [line for line in done.output.splitlines() if "'gpt-image-1' was shut down" in line]
    assert len(warned) == 1 and "with a key it would stop" in warned[0] and "given on the command line" in warned[0]


def test_a_paid_provider_without_a_key_plans_and_a_real_run_stops_before_any_image(runner):
    (runner.root / "input.csv").write_text(SHEET)
    dry = runner.snakemake("-n", "--config", "input_csv=input.csv", "provider=openai")
    assert "3 to pay for: about $" in dry.output
    assert dry.output.count("no API key is set: set AI_API_KEY") == 1 and "a real run stops" in dry.output
    run = runner.snakemake("--config", "input_csv=input.csv", "provider=openai", check=False)
    assert run.returncode != 0 and "Traceback" not in run.output, run.output[-3000:]
    stops = [line for line in run.output.splitlines() if "no API key is set" in line]
    assert len(stops) == 1 and "nothing was made" in stops[0]
    assert not list(runner.root.glob("results/images/*/*.png"))


def test_a_price_each_adds_up_to_the_total_shown():
    assert money_each(0.0527) == "$0.053" and money_each(12.5) == "$12.50" and money_each(0.004) == "$0.0040"


def test_after_placeholders_the_keyed_estimate_still_prices_every_image_a_key_would_remake(runner):
    (runner.root / "input.csv").write_text(SHEET)
    runner.snakemake("--config", "input_csv=input.csv")  # offline placeholders
    done = runner.main("input.csv", "--estimate")
    keyed = next(line for line in done.output.splitlines() if "with an API key (openai" in line)
    assert "3 of 3 image(s) to make" in keyed and "3 to pay for: about $" in keyed, done.output[-3000:]
    assert any("estimate: 0 of 3 image(s) to make" in line for line in done.output.splitlines())
