"""A row removed from the sheet: its image is reported, kept by default, and with
sync.delete_removed removed from the destination (never from the response store); the marker
lists only what the sheet asks for."""

import json

import pytest

from tests.conftest import API_KEY, update_config
from tests.support.fake_openai import FakeOpenAI

ROWS = [("fox", "Nature", "a red fox"), ("owl", "Nature", "an owl"), ("cup", "Kitchen", "a blue cup")]


def sheet(rows):
    return "image_id,context,description\n" + "".join(f"{i},{c},{d}\n" for i, c, d in rows)


@pytest.fixture
def user(runner, s3):
    with FakeOpenAI(api_key=API_KEY) as api:
        runner.env.update(s3.env(), AI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url, S3_BUCKET_NAME="shop")
        s3.client().create_bucket(Bucket="shop")
        (runner.root / "mine.csv").write_text(sheet(ROWS))
        runner.api = api
        yield runner


def marker(s3):
    return json.loads(s3.client().get_object(Bucket="shop", Key="batch/_SUCCESS.json")["Body"].read())


def test_a_removed_row_is_reported_then_removed_with_the_option(user, s3):
    update_config(user.root, sync={"prefix": "batch"})
    for key in ("batch/notes/readme.txt", "batch/assets/logo.png", "batch/2026-11/_SUCCESS.json"):
        s3.client().put_object(Bucket="shop", Key=key, Body=b"not ours")
    user.snakemake("--config", "input_csv=mine.csv")
    assert {k for k in s3.objects("shop") if k.endswith(".png") and "/assets/" not in k} == {
        "batch/nature/fox.png",
        "batch/nature/owl.png",
        "batch/kitchen/cup.png",
    }
    (user.root / "mine.csv").write_text(sheet(ROWS[:2]))  # the cup row is gone

    kept = user.snakemake("--config", "input_csv=mine.csv")
    assert "1 image(s) in results/images no row asks for any more (e.g. kitchen/cup)" in kept.output
    assert "removed rows: 1 image(s) in the destination no row asks for any more" in kept.output
    assert "batch/kitchen/cup.png" in s3.objects("shop")  # off by default, like aws s3 sync
    listed = marker(s3)
    assert {o["key"] for o in listed["objects"]} == {
        "batch/nature/fox.png",
        "batch/nature/fox.json",
        "batch/nature/owl.png",
        "batch/nature/owl.json",
    }
    assert listed["removed"]["listed"] == 2 and listed["removed"]["deleted"] == 0
    assert listed["cost"]["images"] == 2

    update_config(user.root, sync={"prefix": "batch", "delete_removed": True})
    user.api.reset()
    user.snakemake("--config", "input_csv=mine.csv")
    objects = s3.objects("shop")
    assert "batch/kitchen/cup.png" not in objects and "batch/kitchen/cup.json" not in objects
    for key in ("batch/notes/readme.txt", "batch/assets/logo.png", "batch/2026-11/_SUCCESS.json"):
        assert key in objects  # not put there by this workflow: never touched, whatever its shape
    assert marker(s3)["removed"]["deleted"] == 2 and user.api.calls == []
    stored = [p for p in (user.root / "response-store").glob("??/*.json")]
    assert len(stored) == 3  # the response store keeps every answer

    (user.root / "mine.csv").write_text(sheet(ROWS))  # the row comes back: free, from the store
    user.snakemake("--config", "input_csv=mine.csv")
    assert "batch/kitchen/cup.png" in s3.objects("shop") and user.api.paid_calls == []


CATS = [("tabby", "Cats", "a tabby cat"), ("siamese", "Cats", "a siamese cat"), ("lion", "Big Cats", "a lion")]
DOGS = [("pug", "Dogs", "a pug"), ("collie", "Dogs", "a collie")]


def summary_lines(result):
    return [line for line in result.output.splitlines() if "removed rows:" in line]


def test_another_sheet_in_the_same_folder_and_bucket_is_never_deleted(user, s3):
    """cats.csv, then dogs.csv, with sync.delete_removed, same folder, same bucket and prefix: the
    cats images are another sheet's, kept and listed as such, not taken for removed rows of dogs.
    Then a cats row removed is deleted (ours, unchanged), and one whose object was replaced by hand
    since is kept and listed."""
    update_config(user.root, sync={"prefix": "batch", "delete_removed": True})
    (user.root / "cats.csv").write_text(sheet(CATS))
    (user.root / "dogs.csv").write_text(sheet(DOGS))
    cats = user.main("cats.csv")
    assert cats.returncode == 0, cats.output[-4000:]
    cat_keys = {
        f"batch/{f}/{i}.{x}" for i, c, _ in CATS for f in [c.lower().replace(" ", "-")] for x in ("png", "json")
    }
    assert cat_keys <= set(s3.objects("shop"))

    dogs = user.main("dogs.csv")
    assert dogs.returncode == 0, dogs.output[-4000:]
    objects = s3.objects("shop")
    assert cat_keys <= set(objects)  # another sheet's: never deleted
    assert {"batch/dogs/pug.png", "batch/dogs/collie.png"} <= set(objects)
    assert "no row asks for any more" not in dogs.output  # cats are not removed rows of dogs
    cats_sheet = str((user.root / "cats.csv").resolve())
    kept = summary_lines(dogs)
    assert kept and "left as they are: 6 object(s) this sheet did not put there" in kept[-1], dogs.output[-3000:]
    assert f"another sheet's: {cats_sheet}" in kept[-1]
    listed = marker(s3)
    assert listed["sheet"] == str((user.root / "dogs.csv").resolve())
    assert listed["removed"]["deleted"] == 0 and listed["removed"]["other_sheets"] == [cats_sheet]

    # a cats row removed: ours, unchanged, deleted; the dogs stay (another sheet's for cats)
    (user.root / "cats.csv").write_text(sheet(CATS[1:]))
    fewer = user.main("cats.csv")
    assert fewer.returncode == 0, fewer.output[-4000:]
    objects = s3.objects("shop")
    assert "batch/cats/tabby.png" not in objects and "batch/cats/tabby.json" not in objects
    assert {"batch/cats/siamese.png", "batch/big-cats/lion.png", "batch/dogs/pug.png", "batch/dogs/pug.json"} <= set(
        objects
    )
    assert marker(s3)["removed"]["deleted"] == 2

    # the lion's object replaced by hand, then its row removed: changed since we wrote it, kept
    s3.client().put_object(Bucket="shop", Key="batch/big-cats/lion.png", Body=b"someone's own lion")
    (user.root / "cats.csv").write_text(sheet(CATS[1:2]))
    changed = user.main("cats.csv")
    assert changed.returncode == 0, changed.output[-4000:]
    objects = s3.objects("shop")
    assert objects["batch/big-cats/lion.png"] == b"someone's own lion"  # not ours any more: kept
    assert "batch/big-cats/lion.json" not in objects  # its sidecar was ours and unchanged
    line = summary_lines(changed)[-1]
    assert "1 changed since, e.g. batch/big-cats/lion.png" in line, changed.output[-3000:]
    assert marker(s3)["removed"]["kept_changed"] == ["batch/big-cats/lion.png"]
    assert user.api.paid_calls and len(user.api.paid_calls) == len(CATS) + len(DOGS)  # each paid once


def test_two_sheets_into_a_local_folder_destination(runner):
    """The same with no bucket (the local folder destination, offline generator)."""
    update_config(runner.root, sync={"delete_removed": True})
    (runner.root / "cats.csv").write_text(sheet(CATS))
    (runner.root / "dogs.csv").write_text(sheet(DOGS))
    bucket = runner.root / "results" / "bucket"
    assert runner.main("cats.csv").returncode == 0
    dogs = runner.main("dogs.csv")
    assert dogs.returncode == 0, dogs.output[-4000:]
    for name in ("cats/tabby", "cats/siamese", "big-cats/lion", "dogs/pug"):
        assert (bucket / f"{name}.png").is_file(), name
    assert "in results/images no row asks for any more" not in dogs.output
    assert "another sheet's" in summary_lines(dogs)[-1]

    (bucket / "cats" / "siamese.png").write_bytes(b"replaced by hand")
    (runner.root / "cats.csv").write_text(sheet(CATS[2:]))  # tabby and siamese gone
    fewer = runner.main("cats.csv")
    assert fewer.returncode == 0, fewer.output[-4000:]
    assert "2 image(s) in results/images no row asks for any more" in fewer.output
    assert not (bucket / "cats" / "tabby.png").exists() and not (bucket / "cats" / "tabby.json").exists()
    assert (bucket / "cats" / "siamese.png").read_bytes() == b"replaced by hand"
    assert (bucket / "dogs" / "pug.png").is_file() and (bucket / "big-cats" / "lion.png").is_file()
    assert "1 changed since, e.g. cats/siamese.png" in summary_lines(fewer)[-1]
    dogs = runner.main("dogs.csv")  # the cats' removed rows are not the dogs'
    assert dogs.returncode == 0 and "in results/images no row asks for any more" not in dogs.output

    # nothing changes: the folder's marker is kept, and the local one is its very bytes
    for path in (runner.root / "results/sync").glob("synced-*.json"):
        path.unlink()  # the sync runs again: siamese.png is now no sheet's (it is not ours any more)
    assert runner.main("cats.csv").returncode == 0
    kept = json.loads((bucket / "_SUCCESS.json").read_text())
    kept["created"] = "2026-01-02T03:04:05+00:00"
    (bucket / "_SUCCESS.json").write_text(json.dumps(kept))
    for path in (runner.root / "results/sync").glob("synced-*.json"):
        path.unlink()  # the sync runs again
    assert runner.main("cats.csv").returncode == 0
    assert (runner.root / "results/_SUCCESS.json").read_bytes() == (bucket / "_SUCCESS.json").read_bytes()
    assert json.loads((runner.root / "results/_SUCCESS.json").read_text())["created"] == kept["created"]


def test_a_context_removed_by_a_stopped_run_is_synced_after_another_sheets_sync(runner):
    """A context's last row removed takes its page (a sync chunk) away: the sheet's list of pages
    is then the sync's input. A run stopped after writing that list, then another sheet's sync in
    the same folder (which rewrites results/_SUCCESS.json): the next run of this sheet still syncs,
    and deletes the context's images from the destination."""
    update_config(runner.root, sync={"delete_removed": True})
    (runner.root / "cats.csv").write_text(sheet(CATS))
    (runner.root / "dogs.csv").write_text(sheet(DOGS))
    bucket = runner.root / "results" / "bucket"
    runner.snakemake("--config", "input_csv=cats.csv")
    runner.snakemake("--config", "input_csv=dogs.csv")
    assert (bucket / "big-cats" / "lion.png").is_file()
    (runner.root / "cats.csv").write_text(sheet(CATS[:2]))  # the Big Cats context is gone
    # a run of cats stopped right after it wrote its plan files (before its sync)
    runner.snakemake("--config", "input_csv=cats.csv", "--until", "write_plan_file")
    assert (bucket / "big-cats" / "lion.png").is_file()
    (runner.root / "dogs.csv").write_text(sheet([*DOGS, ("beagle", "Dogs", "a beagle")]))
    runner.snakemake("--config", "input_csv=dogs.csv")  # another sheet's sync
    dry = runner.snakemake("--dry-run", "--config", "input_csv=cats.csv")
    assert "Nothing to be done" not in dry.output
    runner.snakemake("--config", "input_csv=cats.csv")
    assert not (bucket / "big-cats" / "lion.png").exists() and not (bucket / "big-cats" / "lion.json").exists()
    assert (bucket / "cats" / "tabby.png").is_file() and (bucket / "dogs" / "beagle.png").is_file()
    assert "Nothing to be done" in runner.snakemake("--dry-run", "--config", "input_csv=cats.csv").output


def test_the_local_marker_is_the_buckets_when_it_is_kept(user, s3):
    """A rerun that changes nothing keeps the bucket's marker; results/_SUCCESS.json is then the
    very same bytes (time included), and the summary still says this run synced (0 sent)."""
    user.snakemake("--config", "input_csv=mine.csv")
    assert (user.root / "results/_SUCCESS.json").read_bytes() == s3.objects("shop")["_SUCCESS.json"]
    # the bucket's marker as an earlier sync wrote it (same content, an older time)
    old = json.loads(s3.objects("shop")["_SUCCESS.json"])
    old["created"] = "2026-01-02T03:04:05+00:00"
    first = json.dumps(old, indent=1).encode()
    s3.client().put_object(Bucket="shop", Key="_SUCCESS.json", Body=first)
    for path in (user.root / "results/sync").glob("synced-*.json"):
        path.unlink()  # the sync runs again, and finds the destination complete
    again = user.snakemake("--config", "input_csv=mine.csv")
    assert "destination already complete; marker unchanged" in (user.root / "results/logs/sync.log").read_text()
    assert s3.objects("shop")["_SUCCESS.json"] == first
    assert (user.root / "results/_SUCCESS.json").read_bytes() == first
    assert "(0 file(s) sent)" in again.output, again.output[-3000:]


def test_an_object_of_our_shape_no_sheet_put_there_is_never_deleted(user, s3):
    """With sync.delete_removed: objects shaped like ours (<context>/<id>.png/.json) that no sync of
    any sheet recorded (put there by hand, or by a version before the ledgers) are kept and counted
    apart, not taken for removed rows."""
    update_config(user.root, sync={"prefix": "batch", "delete_removed": True})
    for key in ("batch/nature/stray.png", "batch/nature/stray.json", "batch/old/cup.png"):
        s3.client().put_object(Bucket="shop", Key=key, Body=b"someone else's")
    done = user.snakemake("--config", "input_csv=mine.csv")
    objects = s3.objects("shop")
    assert all(objects[k] == b"someone else's" for k in ("batch/nature/stray.png", "batch/nature/stray.json"))
    assert objects["batch/old/cup.png"] == b"someone else's" and "batch/nature/fox.png" in objects
    line = summary_lines(done)[-1]
    assert "left as they are: 3 object(s)" in line and "3 no sheet of ours put there" in line, line
    assert marker(s3)["removed"]["kept_not_ours"] == 3 and marker(s3)["removed"]["deleted"] == 0
