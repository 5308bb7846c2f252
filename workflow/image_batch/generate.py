"""The images stage: make one image from its spec, write the PNG and its sidecar atomically."""

import datetime
import hashlib
import json

from .fileio import atomic_write_bytes, atomic_write_json
from .imaging import to_png
from .joblog import JobLog
from .providers import get_provider


def _iso(timestamp=None):
    moment = (
        datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
        if timestamp
        else datetime.datetime.now(datetime.timezone.utc)
    )
    return moment.isoformat(timespec="seconds")


def make_image(spec_file, png_file, sidecar_file, log_file, config):
    """Generate the image described by ``spec_file``.  The PNG and the sidecar are each written to
    a temporary name and renamed into place, so a crash never leaves a half-written file."""
    spec = json.loads(open(spec_file, encoding="utf-8").read())
    request = spec["request"]
    with JobLog(log_file) as log:
        provider = get_provider(request["provider"], config)
        log(f"{spec['image_id']}: generating with {request['provider']} model {request['model']}")
        if not provider.paid:
            log("OFFLINE generator: this is a placeholder image, not an AI-generated one")
        result = provider.generate(request)
        png, info = to_png(result.data)
        if info.get("converted_from"):
            log(f"converted {info['converted_from']} answer to PNG")
        sidecar = {
            "image_id": spec["image_id"],
            "context": spec["context"],
            "folder": spec["folder"],
            "prompt": request["prompt"],
            "provider": request["provider"],
            "model": result.model,
            "size": result.details.get("size") or request.get("size"),
            "quality": result.details.get("quality") or request.get("quality"),
            "background": result.details.get("background") or request.get("background"),
            "request_id": result.request_id,
            "usage": result.usage,
            "created": _iso(result.created),
            "width": info["width"],
            "height": info["height"],
            "source_format": info["source_format"],
            "sha256": hashlib.sha256(png).hexdigest(),
            "bytes": len(png),
        }
        if request.get("variant"):
            sidecar["variant"] = request["variant"]
        atomic_write_bytes(png_file, png)
        atomic_write_json(sidecar_file, sidecar)
        log(f"wrote {png_file} ({len(png)} bytes, sha256 {sidecar['sha256']}, request id {result.request_id})")
    return sidecar
