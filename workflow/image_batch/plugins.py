"""The plugin manager: Image.Batch's default plugins and any installed package that declares an
entry point in the ``image_batch`` group (see hookspecs)."""

import difflib
import importlib
import threading

import pluggy

from image_batch import hookspecs
from image_batch.common.errors import UserError

DEFAULT_PLUGINS = (
    "image_batch.default_plugins.openai_images",
    "image_batch.default_plugins.gemini",
    "image_batch.default_plugins.offline",
    "image_batch.default_plugins.openai_text",
    "image_batch.default_plugins.gemini_text",
)

_lock = threading.Lock()
_manager = None


def manager():
    """The process-wide plugin manager, loaded on first use."""
    global _manager
    with _lock:
        if _manager is None:
            pm = pluggy.PluginManager("image_batch")
            pm.add_hookspecs(hookspecs)
            for name in DEFAULT_PLUGINS:
                pm.register(importlib.import_module(name), name)
            pm.load_setuptools_entrypoints("image_batch")
            _manager = pm
        return _manager


def registered(hook_name, what):
    """{name: class} of every class the plugins register through hook ``hook_name`` (``what``
    names them in the message about two plugins registering the same name)."""
    found = {}

    def register(cls):
        if cls.name in found and found[cls.name] is not cls:
            raise UserError(f"two plugins register {what} named {cls.name!r}")
        found[cls.name] = cls

    hook = getattr(manager().hook, hook_name, None)
    if hook is not None:
        hook(register=register)
    return found


_found = []


def providers():
    """{name: ImageProvider subclass} of every registered provider (asked once per process)."""
    if not _found:
        _found[:] = [registered("register_image_providers", "an image provider")]
    return _found[0]


def provider_class(name, where=None):
    """The provider class registered as ``name`` (a clear error naming the ones there are, a near
    miss first; ``where``: the setting and where it was made, e.g. "provider given on the command line")."""
    found = providers()
    if name not in found:
        guess = difflib.get_close_matches(str(name), sorted(found), n=2, cutoff=0.7)
        raise UserError(
            f"no image provider named {name!r}"
            + (f" ({where})" if where else "")
            + (f"; did you mean {' or '.join(repr(g) for g in guess)}? installed: " if guess else "; installed: ")
            + ", ".join(sorted(found))
        )
    return found[name]
