"""The prompt-writer interface (``describe:``): a chat model turns a row's description into the
image prompt. Each backend is a small class registered by a plugin (hookspecs
``register_prompt_writers``; Image.Batch's own are in default_plugins/), like image providers.

A call is two steps so that a paid answer can be stored before anything else happens:
``fetch(request)`` makes one call and returns the answer as received (a providers.RawResponse);
``text(raw)`` reads the written prompt and its usage from it. Neither retries: the caller asks
``classify(exc, request)`` what a failure means (images.faults) and retries.
"""

from abc import ABC, abstractmethod


class PromptWriter(ABC):
    """One text backend. ``name`` is the provider it belongs to (``describe.provider``, else the
    image provider); ``paid`` writers get the response store, retries and cost reports."""

    name: str = ""
    paid: bool = False

    def __init__(self, section: dict):
        self.config = section or {}

    @classmethod
    @abstractmethod
    def request_params(cls, section: dict, environ) -> dict:
        """The fields that identify a call besides model, instructions and input (the endpoint, for
        a paid API its ``base_url``): part of the describe request, so of the response store's key."""

    @abstractmethod
    def fetch(self, request: dict):
        """Make one call for ``request`` (provider, endpoint, model, instructions, input)."""

    @abstractmethod
    def text(self, raw, request: dict):
        """(the written prompt, usage dict or None) of an answer; faults.InvalidResponse when the
        answer holds no text."""

    def classify(self, exc, request=None):
        return None


_found = []


def writers():
    """{name: PromptWriter subclass} of every registered writer (asked once per process)."""
    from image_batch.plugins import registered

    if not _found:
        _found[:] = [registered("register_prompt_writers", "a prompt writer")]
    return _found[0]


def writer_class(name):
    from image_batch.common.errors import UserError

    found = writers()
    if name not in found:
        raise UserError(
            f"describe: no prompt writer for provider {name!r}; installed: {', '.join(sorted(found))} "
            "(set describe.provider to one of them)"
        )
    return found[name]


def get_writer(name, settings):
    return writer_class(name)(settings.section(name))
