"""Change detection: an image's request file (named by its content) is new, and so its image stale,
exactly when its request changes; planning writes none of them."""

import json
import os
import time
from pathlib import Path

import pytest

from image_batch.common.errors import SheetError, UserError
from image_batch.descriptions.sheet import Row
from image_batch.descriptions.specs import (
    adopt,
    build_prompt,
    build_specs,
    plan_requests,
    request_path,
    spec_bytes,
    write_request,
)
from tests.conftest import settings_for

ENV = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1/"}
CONFIG = settings_for(
    max_prompt_chars=100,
    openai={"model": "gpt-image-test", "size": "1024x1024", "quality": "low", "output_format": "png"},
    offline={"size": "64x64"},
)


def settings(**changes):
    return settings_for(
        max_prompt_chars=100,
        openai={"model": "gpt-image-test", "size": "1024x1024", "quality": "low", "output_format": "png", **changes},
        offline={"size": "64x64"},
    )


def rows(*descriptions):
    return [Row(i + 2, f"id{i}", "Nature", "nature", d) for i, d in enumerate(descriptions)]


def mtimes(root):
    return {p.name.split(".")[0]: p.stat().st_mtime_ns for p in root.rglob("*.json")}


def listing(root):
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*")}


def write_specs(specs, root, protect_paid=False, images=None):
    """What a real run does with the plan's request files: plan (which writes nothing), then the
    write_request job of every request file that is due. Returns how many were written."""
    images = images or root.parent / "images"
    before = listing(root) if root.exists() else {}
    planned = plan_requests(specs, root, images, protect_paid=protect_paid)
    assert (listing(root) if root.exists() else {}) == before, "planning wrote something"
    by_path = {str(request_path(spec, root=root)): spec for spec in specs}
    for path in planned.due:
        spec = by_path[path]
        write_request(spec, path, planned.superseded.get((spec["folder"], spec["image_id"]), ()))
    return len(planned.due)


def age_all(root):
    for path in root.rglob("*.json"):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))


def test_only_changed_rows_are_rewritten(tmp_path):
    root = tmp_path / "specs"
    assert write_specs(build_specs(rows("a", "b", "c"), CONFIG, "openai", "s.csv"), root) == 3
    age_all(root)
    before = mtimes(root)
    assert write_specs(build_specs(rows("a", "b", "c"), CONFIG, "openai", "s.csv"), root) == 0
    assert mtimes(root) == before
    assert write_specs(build_specs(rows("a", "B!", "c", "d"), CONFIG, "openai", "s.csv"), root) == 2
    after = mtimes(root)
    assert sorted(name for name in after if after[name] != before.get(name)) == ["id1", "id3"]
    assert len(list(root.rglob("*.json"))) == 4  # the replaced request file of id1 is gone


def test_line_moves_do_not_change_specs(tmp_path):
    root = tmp_path / "specs"
    write_specs(build_specs([Row(2, "x", "N", "n", "d")], CONFIG, "openai", "s.csv"), root)
    assert write_specs(build_specs([Row(9, "x", "N", "n", "d")], CONFIG, "openai", "s.csv"), root) == 0


def test_generation_settings_are_part_of_the_request(tmp_path):
    root = tmp_path / "specs"
    write_specs(build_specs(rows("a"), CONFIG, "openai", "s.csv"), root)
    changed = settings(quality="high")
    assert write_specs(build_specs(rows("a"), changed, "openai", "s.csv"), root) == 1
    with_variant = settings_for(
        max_prompt_chars=100, variant="v2", openai={"model": "gpt-image-test", "quality": "high", "size": "1024x1024"}
    )
    assert write_specs(build_specs(rows("a"), with_variant, "openai", "s.csv"), root) == 1


def test_the_endpoint_is_part_of_the_request(tmp_path):
    root = tmp_path / "specs"
    default = build_specs(rows("a"), CONFIG, "openai", "s.csv", environ={})
    assert default[0]["request"]["base_url"] == "https://api.openai.com/v1"
    write_specs(default, root)
    gateway = build_specs(rows("a"), CONFIG, "openai", "s.csv", environ=ENV)
    assert gateway[0]["request"]["base_url"] == "http://127.0.0.1:9/v1"
    assert write_specs(gateway, root) == 1  # another endpoint: the image is made (and paid) there


def test_request_content():
    (spec,) = build_specs(rows("a red fox"), CONFIG, "openai", "s.csv", environ=ENV)
    assert spec["request"] == {
        "provider": "openai",
        "endpoint": "images/generations",
        "base_url": "http://127.0.0.1:9/v1",
        "model": "gpt-image-test",
        "size": "1024x1024",
        "quality": "low",
        "output_format": "png",
        "prompt": "a red fox",
    }
    assert "response_format" not in spec["request"]
    digest = __import__("hashlib").sha256(spec_bytes(spec)).hexdigest()[:16]
    assert request_path(spec).as_posix() == f"results/specs/nature/id0.{digest}.json"


def test_templates():
    row = Row(2, "id0", "Food & Beverage", "food-beverage", "a cake")
    photo = settings_for(prompt_template="Photo: {description} ({context})")
    assert build_prompt(row, photo) == "Photo: a cake (Food & Beverage)"
    config = settings_for(prompt_template="G {description}", context_templates={"food-beverage": "F {description}"})
    assert build_prompt(row, config) == "F a cake"
    assert build_prompt(Row(2, "i", "Other", "other", "x"), config) == "G x"
    with pytest.raises(UserError, match="not valid"):
        build_prompt(row, settings_for(prompt_template="{nope}"))


def test_templated_prompt_too_long():
    config = settings_for(max_prompt_chars=100, prompt_template="x" * 95 + "{description}")
    with pytest.raises(SheetError, match="line 2, column description: the prompt made from it is 101"):
        build_specs(rows("abcdef"), config, "openai", "s.csv")


def test_offline_fallback_never_replaces_paid_images(tmp_path):
    root, images = tmp_path / "specs", tmp_path / "images"
    write_specs(build_specs(rows("a"), CONFIG, "openai", "s.csv"), root)
    before = mtimes(root)
    offline = build_specs(rows("a"), CONFIG, "offline", "s.csv")
    # request files alone (a dry run or an estimate with a key wrote them) protect nothing
    assert write_specs(offline, root, protect_paid=True, images=images) == 1
    write_specs(build_specs(rows("a"), CONFIG, "openai", "s.csv"), root)
    (images / "nature").mkdir(parents=True)
    (images / "nature" / "id0.png").write_bytes(b"png")
    (images / "nature" / "id0.json").write_text('{"provider": "openai"}')
    before = mtimes(root)
    with pytest.raises(UserError, match="made by a paid provider"):
        write_specs(offline, root, protect_paid=True, images=images)
    assert mtimes(root) == before
    # chosen explicitly, it is allowed
    assert write_specs(offline, root, images=images) == 1


def test_per_row_variant_makes_only_that_row_stale(tmp_path):
    root = tmp_path / "specs"
    base = [Row(2, "a", "N", "n", "same prompt"), Row(3, "b", "N", "n", "other")]
    write_specs(build_specs(base, CONFIG, "openai", "s.csv"), root)
    fresh = [Row(2, "a", "N", "n", "same prompt", "2"), Row(3, "b", "N", "n", "other")]
    specs = build_specs(fresh, CONFIG, "openai", "s.csv")
    assert specs[0]["request"]["variant"] == "2" and "variant" not in specs[1]["request"]
    assert write_specs(specs, root) == 1
    with_global = settings_for(variant="g", openai={"model": "gpt-image-test"})
    assert build_specs(fresh, with_global, "openai", "s.csv")[0]["request"]["variant"] == "g/2"


def test_going_back_to_an_earlier_request_makes_the_image_again(tmp_path):
    """A, then B, then A again: A's old file would be older than the image made from B and look up
    to date; writing B deleted it, so A is a new file again and the image is to make."""
    root, images = tmp_path / "specs", tmp_path / "images"
    a = build_specs(rows("a"), CONFIG, "openai", "s.csv")
    b = build_specs(rows("b"), CONFIG, "openai", "s.csv")
    key = ("nature", "id0")
    for when, specs in enumerate((a, b, a), start=1):
        planned = plan_requests(specs, root, images)
        assert planned.to_make == {key} and len(planned.due) == 1  # no image yet, or made from the other
        assert write_specs(specs, root, images=images) == 1
        make_image(images, "id0", when=time.time() + when)  # (Snakemake makes it after its request)
        assert plan_requests(specs, root, images).to_make == set()
        assert [p.name for p in (root / "nature").iterdir()] == [request_path(specs[0], root=root).name]


def make_image(images, image_id, provider="openai", when=2_000_000_000):
    (images / "nature").mkdir(parents=True, exist_ok=True)
    for suffix, data in ((".png", b"png"), (".json", json.dumps({"provider": provider}))):
        path = images / "nature" / f"{image_id}{suffix}"
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        os.utime(path, (when, when))


def test_a_request_file_newer_than_its_image_makes_it_again(tmp_path):
    root, images = tmp_path / "specs", tmp_path / "images"
    specs = build_specs(rows("a"), CONFIG, "openai", "s.csv")
    write_specs(specs, root, images=images)
    make_image(images, "id0")
    path = request_path(specs[0], root=root)
    os.utime(path, (3_000_000_000, 3_000_000_000))  # the image job did not finish
    planned = plan_requests(specs, root, images)
    assert planned.to_make == {("nature", "id0")} and planned.due == [] and planned.new == 0


def test_a_png_without_its_sidecar_names_a_marker_by_the_pngs_time(tmp_path):
    """The sidecar is no declared output of the image job: an image whose PNG is there without it
    is to make through a marker (a target a real run writes, the job's input), named by the PNG's
    size and time, so that a sidecar lost again after the image was made again names another."""
    root, images = tmp_path / "specs", tmp_path / "images"
    specs = build_specs(rows("a", "b"), CONFIG, "openai", "s.csv")
    write_specs(specs, root, images=images)
    make_image(images, "id0")
    make_image(images, "id1")
    assert plan_requests(specs, root, images).remake == {}
    (images / "nature/id1.json").unlink()
    planned = plan_requests(specs, root, images)
    assert planned.to_make == {("nature", "id1")} and list(planned.remake) == [("nature", "id1")]
    path, data = planned.remake[("nature", "id1")]
    assert Path(path).parent == Path("results/specs/_remake/nature") and Path(path).name.startswith("id1.")
    assert json.loads(data)["png"] == {"size": 3, "mtime_ns": 2_000_000_000 * 10**9}
    assert plan_requests(specs, root, images).remake[("nature", "id1")] == (path, data)  # the same plan again
    # a marker there already, not newer than the PNG (a run stopped before the image job, the PNG's
    # time in the future): it would make nothing due, so the next name is taken
    marker = tmp_path / path
    marker.parent.mkdir(parents=True)
    marker.write_bytes(data)
    os.utime(marker, (1_000_000_000, 1_000_000_000))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        again_path, again_data = plan_requests(specs, root, images).remake[("nature", "id1")]
        assert again_path != path and json.loads(again_data)["again"] == 1
        os.utime(marker, (3_000_000_000, 3_000_000_000))  # newer than the PNG: it makes the job due
        assert plan_requests(specs, root, images).remake[("nature", "id1")] == (path, data)
    os.utime(images / "nature/id1.png", (2_000_000_100, 2_000_000_100))  # made again since
    assert plan_requests(specs, root, images).remake[("nature", "id1")][0] != path
    (images / "nature/id1.png").unlink()  # no PNG: due anyway, no marker
    planned = plan_requests(specs, root, images)
    assert planned.to_make == {("nature", "id1")} and planned.remake == {}


def test_an_image_is_as_new_as_its_png(tmp_path):
    """``snakemake --touch`` touches the image job's one declared output, the PNG: an image whose
    request file is newer (a run that did not finish it) is up to date once its PNG is touched,
    though its sidecar is older."""
    root, images = tmp_path / "specs", tmp_path / "images"
    specs = build_specs(rows("a"), CONFIG, "openai", "s.csv")
    write_specs(specs, root, images=images)
    make_image(images, "id0")
    os.utime(request_path(specs[0], root=root), (3_000_000_000, 3_000_000_000))
    assert plan_requests(specs, root, images).to_make == {("nature", "id0")}
    os.utime(images / "nature/id0.png", (4_000_000_000, 4_000_000_000))  # what --touch does
    assert plan_requests(specs, root, images).to_make == set()


def test_the_earlier_layouts_request_file_keeps_its_image_up_to_date(tmp_path):
    """results/ of the version before content-named request files: <image_id>.json, not newer
    than the image, with the same bytes: the image is up to date, and a real run links the file to
    its new name with its time. Different bytes, or newer than the image: to make."""
    root, images = tmp_path / "specs", tmp_path / "images"
    specs = build_specs(rows("a", "b", "c"), CONFIG, "openai", "s.csv")
    (root / "nature").mkdir(parents=True)
    for spec in specs:
        (root / "nature" / f"{spec['image_id']}.json").write_bytes(spec_bytes(spec))
        os.utime(root / "nature" / f"{spec['image_id']}.json", ns=(1_000_000_000, 1_000_000_000))
        make_image(images, spec["image_id"])
    (root / "nature/id1.json").write_bytes(spec_bytes(specs[1]).replace(b'"b"', b'"B"'))  # another request
    os.utime(root / "nature/id1.json", ns=(1_000_000_000, 1_000_000_000))
    os.utime(root / "nature/id2.json", (4_000_000_000, 4_000_000_000))  # newer than its image
    planned = plan_requests(specs, root, images)
    assert planned.to_make == {("nature", "id1"), ("nature", "id2")}
    assert planned.paths[("nature", "id0")] == str(root / "nature/id0.json")
    assert planned.superseded[("nature", "id1")] == [str(root / "nature/id1.json")]
    adopt(planned.adopt.values())
    new = request_path(specs[0], root=root)
    assert new.read_bytes() == spec_bytes(specs[0]) and new.stat().st_mtime_ns == 1_000_000_000
    again = plan_requests(specs, root, images)
    assert again.paths[("nature", "id0")] == str(new) and ("nature", "id0") not in again.to_make


def test_ids_with_dots_have_their_own_request_files(tmp_path):
    root, images = tmp_path / "specs", tmp_path / "images"
    fox = [Row(2, "fox", "N", "nature", "a fox")]
    both = [*fox, Row(3, "fox.v2", "N", "nature", "another fox")]
    write_specs(build_specs(both, CONFIG, "openai", "s.csv"), root, images=images)
    write_specs(build_specs(fox + [Row(3, "fox.v2", "N", "nature", "changed")], CONFIG, "openai", "s.csv"), root)
    names = sorted(p.name.rsplit(".", 2)[0] for p in (root / "nature").iterdir())
    assert names == ["fox", "fox.v2"]  # the fox's file was not taken for a replaced one of fox.v2
