"""Plan.image_jobs_take_inputs answers, from the plan's sets, what image_inputs would for some image
(the image rule declares no input function when no image job has an input: image_batch.plan)."""

import itertools

from image_batch.descriptions.specs import Requests
from image_batch.plan import Plan


def plan_of(specs, requests):
    plan = Plan.__new__(Plan)
    plan.specs = specs
    plan.images = [(s["folder"], s["image_id"]) for s in specs]
    plan._by_image = {(s["folder"], s["image_id"]): s for s in specs}
    plan.sheet = "input.csv"
    plan.requests = requests
    return plan


def test_the_answer_is_image_inputs_for_some_image_in_every_state():
    images = [("nature", "fox"), ("nature", "owl"), ("food", "cake")]
    specs = [{"folder": f, "image_id": i} for f, i in images]
    paths = {key: f"results/specs/{key[0]}/{key[1]}.0123456789abcdef.json" for key in images}
    states = []
    for to_make, unmade, remake, pictures in itertools.product(
        [set(), {images[0]}, set(images)], [set(), {images[0]}, set(images)], [{}, {images[1]: ("m", b"")}], [0, 1]
    ):
        rows = [dict(s) for s in specs]
        if pictures:
            rows[2]["references"] = [{"path": "pictures/cake.png"}]
        requests = Requests(paths=dict(paths), to_make=set(to_make), unmade=set(unmade), remake=dict(remake))
        plan = plan_of(rows, requests)
        expected = any(plan.image_inputs(*image) for image in plan.images)
        assert plan.image_jobs_take_inputs == expected, (to_make, unmade, remake, pictures)
        states.append(expected)
    assert True in states and False in states
    # a picture named by an address is no input
    rows = [dict(s) for s in specs]
    rows[0]["references"] = [{"path": "https://example.com/fox.png"}]
    plan = plan_of(rows, Requests(paths=dict(paths)))
    assert plan.image_jobs_take_inputs is False
