"""Providers are plugins: a third-party package that declares an entry point in the `image_batch`
group is found and used exactly as Image.Batch's own default plugins are."""

import json
import textwrap

from image_batch.plugins import DEFAULT_PLUGINS, providers

PLUGIN = '''
import hashlib

from PIL import Image
import io

from image_batch.hookspecs import hookimpl
from image_batch.providers import GeneratedImage, ImageProvider, RawResponse


class Sketch(ImageProvider):
    """A free provider that draws a grey square (shade from the prompt)."""

    name = "sketch"

    @classmethod
    def request_params(cls, section, environ=None):
        return {"model": "sketch-1", "size": str(section.get("size") or "32x32")}

    def fetch(self, request):
        width, height = (int(v) for v in request["size"].split("x"))
        shade = hashlib.sha256(request["prompt"].encode()).digest()[0]
        out = io.BytesIO()
        Image.new("L", (width, height), shade).save(out, "PNG")
        return RawResponse(body=out.getvalue())

    def decode(self, raw, request):
        return GeneratedImage(data=raw.body, model="sketch-1", details={"size": request["size"]})


@hookimpl
def register_image_providers(register):
    register(Sketch)
'''


def install_plugin(site):
    """A package on ``site`` with an entry point, as `pip install` would leave it."""
    (site / "sketch_plugin.py").write_text(PLUGIN)
    info = site / "sketch_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sketch-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[image_batch]\nsketch = sketch_plugin\n")
    (info / "RECORD").write_text("")


def test_the_default_providers_are_plugins_too():
    found = providers()
    assert {"openai", "gemini", "offline"} <= set(found)
    assert DEFAULT_PLUGINS == (
        "image_batch.default_plugins.openai_images",
        "image_batch.default_plugins.gemini",
        "image_batch.default_plugins.offline",
        "image_batch.default_plugins.openai_text",
        "image_batch.default_plugins.gemini_text",
    )


def test_the_prompt_writers_are_plugins_too():
    from image_batch.writers import writers

    assert {"openai", "gemini", "offline"} <= set(writers())


def test_a_third_party_provider_is_selected_by_name(runner, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site)
    runner.env["PYTHONPATH"] = str(site)
    (runner.root / "mine.csv").write_text("image_id,context,description\na,Shapes,one\nb,Shapes,two\n")
    (runner.root / "config" / "sketch.yaml").write_text(
        textwrap.dedent("""
        sketch:
          size: 48x48
    """)
    )
    runner.snakemake("--configfile", "config/sketch.yaml", "--config", "input_csv=mine.csv", "provider=sketch")
    sidecar = json.loads((runner.root / "results/images/shapes/a.json").read_text())
    assert sidecar["provider"] == "sketch" and sidecar["model"] == "sketch-1"
    assert (sidecar["width"], sidecar["height"]) == (48, 48)
    unknown = runner.snakemake("-n", "--config", "input_csv=mine.csv", "provider=nope", check=False)
    assert unknown.returncode == 2 and "no image provider named 'nope'" in unknown.output
    assert "sketch" in unknown.output and "Traceback" not in unknown.output
