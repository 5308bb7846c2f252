"""canonical_json's bytes name request files and are what sidecars' request_sha256 hash: they must
stay exactly json.dumps(sort_keys=True, indent=2, ensure_ascii=False)'s (image_batch.common.fileio)."""

import json
import random

import pytest

from image_batch.common.fileio import canonical_json


def reference(obj):
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


SAMPLES = [
    {},
    [],
    "",
    0,
    None,
    {"a": {}, "b": [], "c": [{}], "d": [[]]},
    {"prompt": 'A "quoted" café, ünïcödé ✓, tab\t, newline\n, nul\x00, \u2028 and emoji 🦊', "z": 1, "a": 2},
    {"numbers": [0, -1, 10**20, 1.5, -0.0, 1e-300, 1e300, float("inf"), float("-inf")], "flags": [True, False, None]},
    {"request": {"model": "gpt-image-1", "size": "1024x1024", "references": ["a.png", "b.png"], "n": 1}},
    {"nested": {"deeper": {"deepest": [1, [2, [3, {"k": "v"}]]]}}},
    {"tuple": (1, "two", (3,)), "Z": "upper sorts first", "_": "underscore"},
    {"é": 1, "e": 2, "E": 3, "10": 4, "9": 5},
]


@pytest.mark.parametrize("obj", SAMPLES)
def test_the_same_text_as_json_dumps(obj):
    assert canonical_json(obj) == reference(obj)


def test_the_same_text_for_random_documents():
    rng = random.Random(19)
    alphabet = ["a", "Z", "é", '"', "\\", "\n", "\x01", "🦊", " ", "0"]

    def text():
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(6)))

    def value(depth):
        kind = rng.randrange(8 if depth < 4 else 5)
        if kind == 0:
            return text()
        if kind == 1:
            return rng.randrange(-(10**6), 10**6)
        if kind == 2:
            return rng.uniform(-1e6, 1e6)
        if kind == 3:
            return rng.choice([True, False, None])
        if kind == 4:
            return rng.randrange(3)
        if kind in (5, 6):
            return {text(): value(depth + 1) for _ in range(rng.randrange(4))}
        return [value(depth + 1) for _ in range(rng.randrange(4))]

    for _ in range(2000):
        obj = value(0)
        assert canonical_json(obj) == reference(obj)


def test_what_it_does_not_know_is_json_dumps_own():
    mixed = {1: "int key", "2": "str key"}
    assert canonical_json({"outer": {3: "x"}}) == reference({"outer": {3: "x"}})
    with pytest.raises(TypeError):
        canonical_json(mixed)  # json.dumps cannot sort int and str keys together either
    with pytest.raises(TypeError):
        canonical_json({"a set": {1, 2}})
