"""Images the app shows, handed to Gradio as files written once under a name of their content.

Why: given a PIL image, Gradio 6 encodes it and rewrites cache/HASH/image.webp in place every time, so two sessions
shown the same picture at once (two clinicians uploading one scan) truncate the file while the other is being served
("Too little data for declared Content-Length"). A file path is copied into Gradio's cache atomically and only once.
"""
import hashlib
import io
import os
import tempfile
import time
from pathlib import Path

from PIL import Image

KEEP_S = 3600  # like the app's delete_cache: Gradio holds its own copy once served
_folder = tempfile.TemporaryDirectory(prefix="medvlm-pictures-")  # private (0700), removed when the app exits


def picture_file(image: Image.Image | bytes | None, fmt: str = "PNG") -> str | None:
    """The image (a PIL image, or already encoded as `fmt`) as a file in this process's private folder, written
    atomically; None stays None."""
    if image is None:
        return None
    if isinstance(image, bytes):
        data = image
    else:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        data = buffer.getvalue()
    folder = Path(_folder.name)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}.{fmt.lower()}"
    if not path.exists():
        staging = tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part")
        with staging:
            staging.write(data)
        os.replace(staging.name, path)
        _prune(folder)
    return str(path)


def _prune(folder: Path) -> None:
    cutoff = time.time() - KEEP_S
    for old in folder.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except FileNotFoundError:
            pass
