"""Issue 16's second walk: mistakes a newcomer makes that the first walk did not list, each met with
one line naming the mistake and its fix (real processes: snakemake, main.py, real signals)."""

from tests.test_signals import calls_in_flight, interrupted_run, lines_with, main_py

TWO = "image_id,context,description\na1,Nature,a fox\na2,Nature,an owl\n"


def test_a_ctrl_c_after_every_image_is_made_says_what_is_left_is_the_sync(keyed, api):
    """Both images were in flight at the Ctrl-C and were finished: nothing is left to make, only the
    sync. The summary said "run the same command again to make the rest" beside "2 made"."""
    (keyed.root / "input.csv").write_text(TWO)
    run = interrupted_run(keyed, api, main_py, lambda run: run.ctrl_c(), ready=calls_in_flight(api, 2))
    output = run.output
    assert run.proc.returncode == 130, output[-4000:]
    assert "Traceback" not in output
    [images] = lines_with(output, "  images: ")
    assert "2 to make, 2 made (2 paid for" in images and "not made" not in images, images
    [stopped] = lines_with(output, "  stopped by Ctrl-C: ")
    assert stopped.endswith("run the same command again to sync them"), stopped
    assert "make the rest" not in output
