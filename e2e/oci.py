"""Write a one-layer OCI image archive, for images made here without a registry or daemon.

``ctr images import`` reads the result (an OCI image layout in a tar stream). The bed
uses it for the sandbox (pause) image, whose single static binary is compiled from the
kubelet's own ``pause.c``.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class File:
    """One regular file of the layer."""

    path: str
    data: bytes
    mode: int = 0o644


def _digest(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def _layer(files: list[File]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for item in files:
            info = tarfile.TarInfo(item.path.lstrip("/"))
            info.size = len(item.data)
            info.mode = item.mode
            info.mtime = 0
            tar.addfile(info, io.BytesIO(item.data))
    return buffer.getvalue()


def image_archive(name: str, files: list[File], config: dict[str, Any]) -> bytes:
    """The OCI layout tar of an image named ``name`` (``host/repo:tag``) holding ``files``.

    ``config`` is the runtime part of the image config (``Entrypoint``, ``User``, ...).
    Everything is deterministic: the same inputs give the same digests.
    """
    layer = _layer(files)
    image_config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": CONFIG_MEDIA_TYPE,
                "digest": _digest(image_config),
                "size": len(image_config),
            },
            "layers": [
                {"mediaType": LAYER_MEDIA_TYPE, "digest": _digest(layer), "size": len(layer)}
            ],
        },
        sort_keys=True,
    ).encode()
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": MANIFEST_MEDIA_TYPE,
                    "digest": _digest(manifest),
                    "size": len(manifest),
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        },
        sort_keys=True,
    ).encode()
    entries = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": index,
        **{f"blobs/sha256/{_digest(b)[7:]}": b for b in (layer, image_config, manifest)},
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, blob in entries.items():
            info = tarfile.TarInfo(path)
            info.size = len(blob)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(blob))
    return buffer.getvalue()
