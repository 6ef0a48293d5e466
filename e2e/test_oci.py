"""The one-layer OCI archive the real node imports its sandbox image from."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

from e2e.oci import File, image_archive


def _members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def test_layout_names_the_image_and_links_every_blob_by_digest() -> None:
    archive = image_archive(
        "roomcast.local/pause:3.10.2",
        [File("pause", b"\x7fELF...", 0o755)],
        {"Entrypoint": ["/pause"]},
    )
    files = _members(archive)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    entry = index["manifests"][0]
    assert entry["annotations"]["io.containerd.image.name"] == "roomcast.local/pause:3.10.2"
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "3.10.2"
    for name, blob in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(blob).hexdigest() == name.rsplit("/", 1)[1]
    manifest = json.loads(files[f"blobs/sha256/{entry['digest'][7:]}"])
    config = json.loads(files[f"blobs/sha256/{manifest['config']['digest'][7:]}"])
    assert config["config"]["Entrypoint"] == ["/pause"]
    layer = files[f"blobs/sha256/{manifest['layers'][0]['digest'][7:]}"]
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        member = tar.getmember("pause")
        assert member.mode == 0o755 and tar.extractfile(member).read() == b"\x7fELF..."  # type: ignore[union-attr]


def test_same_inputs_same_bytes() -> None:
    def build() -> bytes:
        return image_archive("x/y:1", [File("a", b"1")], {})

    assert build() == build()
