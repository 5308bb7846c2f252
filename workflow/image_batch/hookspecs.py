"""The hooks a plugin can implement (in the manner of simonw/llm): Image.Batch's own providers are
plugins too (``default_plugins/``), registered exactly the way a third-party package's are.

A third-party provider is a package with an entry point in the ``image_batch`` group, e.g. in its
pyproject.toml::

    [project.entry-points.image_batch]
    my_provider = "my_provider"

whose module implements::

    from image_batch.hookspecs import hookimpl

    @hookimpl
    def register_image_providers(register):
        register(MyProvider)   # an image_batch.providers.ImageProvider subclass

and then ``provider: my-provider`` in config/config.yaml selects it (its settings come from the
config section named like the provider).
"""

import pluggy

hookspec = pluggy.HookspecMarker("image_batch")
hookimpl = pluggy.HookimplMarker("image_batch")


@hookspec
def register_image_providers(register):
    """Register image providers: call ``register(cls)`` for each ImageProvider subclass."""


@hookspec
def register_prompt_writers(register):
    """Register prompt writers (``describe:``): call ``register(cls)`` for each
    image_batch.writers.PromptWriter subclass; ``cls.name`` is the provider it writes for."""
