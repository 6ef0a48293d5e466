"""The images the suites on real pods run, built here and imported into the node.

No registry is reachable: ``e2e/images/build.sh`` builds them with the local Docker
daemon and they are copied into the node's containerd (``docker save | ctr import``),
then run with ``imagePullPolicy: Never``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from e2e import node as real_node

REPO = Path(__file__).resolve().parents[2]
IMAGES_SCRIPT = REPO / "e2e" / "images" / "build.sh"
IMAGE = "roomcast:e2e"
NEXT_IMAGE = "roomcast:e2e-next"
"""The same image under another tag: a release that changes the image."""
CRASH_IMAGE = "roomcast:e2e-crash"
"""A bad build whose process exits at start: its pods never become Ready."""
REFUSE_IMAGE = "roomcast:e2e-refuse"
"""A bad build that is Ready but refuses every connect."""
REDIS_IMAGE = "roomcast-redis:bookworm"


def docker_ref(image: str) -> str:
    """The name containerd gives an image imported from ``docker save``."""
    name = image if "/" in image.split(":")[0] else f"docker.io/library/{image}"
    return name


def build_and_import_images(layout: real_node.NodeLayout) -> list[str]:
    """Build the suite's images with the local Docker daemon and import them into the node."""
    result = subprocess.run(
        [str(IMAGES_SCRIPT)], capture_output=True, text=True, timeout=1200, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"e2e/images/build.sh failed:\n{result.stdout}\n{result.stderr}")
    images = result.stdout.split()
    for image in images:
        real_node.import_docker_image(layout, image)
    present = set(real_node.node_images(layout))
    missing = [i for i in images if docker_ref(i) not in present]
    if missing:
        raise RuntimeError(f"images not in the node after import: {missing}")
    return images
