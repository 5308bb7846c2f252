"""Plan files named by their content (image_batch.common.addressed): which ones a run must write,
which ones their consumer job takes as input, and which ones the consumer writes itself."""

import os

from image_batch.common import addressed


def plan(root, consumer, data=b'["a", "b"]\n'):
    files = addressed.Files(root)
    return files, files.add("c0", data, consumer)


def test_a_consumer_not_made_yet_writes_its_own_file_and_takes_none(tmp_path):
    root, consumer = tmp_path / "lists", tmp_path / "digest.json"
    files, path = plan(root, consumer)
    assert files.due == [] and files.input(path) == []  # no job, no input: the consumer is due anyway
    assert not root.exists()  # planning writes nothing
    files.ensure(path)
    with open(path, "rb") as handle:
        assert handle.read() == b'["a", "b"]\n'
    files.ensure(path)  # there already: left as it is
    assert os.listdir(root) == [os.path.basename(path)]


def test_a_file_older_than_its_consumer_is_no_input_and_a_newer_one_is(tmp_path):
    root, consumer = tmp_path / "lists", tmp_path / "digest.json"
    files, path = plan(root, consumer)
    files.ensure(path)
    consumer.write_text("{}")
    os.utime(path, (1_000_000_000, 1_000_000_000))
    os.utime(consumer, (2_000_000_000, 2_000_000_000))
    files, again = plan(root, consumer)
    assert again == path and files.due == [] and files.input(path) == []
    files.ensure(path)  # not asked: the consumer has it already, nothing happens
    os.utime(path, (3_000_000_000, 3_000_000_000))  # written by a run that did not finish the consumer
    files, again = plan(root, consumer)
    assert files.due == [] and files.input(path) == path


def test_a_changed_content_is_a_missing_file_its_consumer_takes_and_a_run_writes(tmp_path):
    root, consumer = tmp_path / "lists", tmp_path / "digest.json"
    files, old = plan(root, consumer)
    files.ensure(old)
    consumer.write_text("{}")
    files, new = plan(root, consumer, b'["a", "b", "c"]\n')
    assert new != old and files.due == [new] and files.input(new) == new
    assert files.superseded[new] == [old]
    files.write(os.path.basename(new))  # the write_plan_file job
    assert os.listdir(root) == [os.path.basename(new)]  # the older file of the stem is gone


def test_without_a_consumer_or_a_listing_every_missing_file_is_due_and_taken(tmp_path):
    root = tmp_path / "lists"
    files = addressed.Files(root)
    path = files.add("c0", b"[]\n")
    assert files.due == [path] and files.input(path) == path
    files = addressed.Files(root, scanned=False)  # a storage provider holds the files: nothing looked at
    path = files.add("c0", b"[]\n", tmp_path / "missing-digest.json")
    assert files.due == [path] and files.input(path) == path
