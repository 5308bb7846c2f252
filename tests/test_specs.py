"""Change detection: a spec file changes (and so its image goes stale) exactly when its request does."""

import os

import pytest

from image_batch.common.errors import SheetError, UserError
from image_batch.descriptions.sheet import Row
from image_batch.descriptions.specs import build_prompt, build_specs, spec_path, write_specs
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
    return {p.name: p.stat().st_mtime_ns for p in root.rglob("*.json") if p.name != "_index.json"}


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
    assert sorted(name for name in after if after[name] != before.get(name)) == ["id1.json", "id3.json"]


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
    assert spec_path("nature", "id0").as_posix() == "results/specs/nature/id0.json"


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


def test_index_skips_reading_unchanged_specs_but_notices_deleted_ones(tmp_path):
    root = tmp_path / "specs"
    specs = build_specs(rows("a", "b"), CONFIG, "openai", "s.csv")
    write_specs(specs, root)
    assert (root / "_index.json").exists()
    (root / "nature" / "id1.json").unlink()
    assert write_specs(specs, root) == 1 and (root / "nature" / "id1.json").exists()


def test_only_missing_leaves_changed_specs_alone(tmp_path):
    root = tmp_path / "specs"
    write_specs(build_specs(rows("a"), CONFIG, "openai", "s.csv"), root)
    before = mtimes(root)
    assert write_specs(build_specs(rows("A!", "b"), CONFIG, "openai", "s.csv"), root, only_missing=True) == 1
    after = mtimes(root)
    assert after["id0.json"] == before["id0.json"] and "id1.json" in after
    assert write_specs(build_specs(rows("A!", "b"), CONFIG, "openai", "s.csv"), root) == 1  # later, the edit lands
