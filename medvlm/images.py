"""Open an uploaded PNG, JPEG or DICOM file as an 8-bit RGB PIL image, or fail with one clear line.

Every image the models see goes through `load_image`. The result is a fresh image with no metadata: EXIF and DICOM
tags (patient name, IDs, dates) never travel further than this module, and error messages never quote tag values.
"""
import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from medvlm.errors import UserFacingError
from medvlm.settings import MAX_IMAGE_PIXELS

RASTER_FORMATS = ("PNG", "JPEG")
# Pillow's own opener, taken before anything can replace it: importing ultralytics swaps PIL.Image.open for a wrapper
# that, on a file Pillow cannot identify, tries to install and import a HEIF plugin (an ImportError offline).
_pil_open = Image.open


def fingerprint(image: Image.Image) -> str:
    """The one identity of an image's content (the review database's image_hash, batching by image): its decoded
    pixels, so the same scan is one image whatever file, format or metadata it came in."""
    digest = hashlib.blake2b(f"{image.mode}:{image.size}:".encode(), digest_size=16)
    digest.update(image.tobytes())
    return digest.hexdigest()


def load_image(path) -> Image.Image:
    """Decode `path` into an RGB, 8-bit image: a PNG or JPEG as it is, a DICOM or NIfTI scan's middle slice in its own
    window (medvlm.volumes, which checks every upload's size and kind). Raises UserFacingError for anything that is
    no usable image."""
    from medvlm.volumes import open_scan

    return open_scan([path]).render()


def load_raster(path) -> Image.Image:
    """A PNG or JPEG (medvlm.volumes.open_scan's reader for a file that is not DICOM or NIfTI)."""
    return _decode_raster(Path(path))


def blank_warning(image: Image.Image, name: str) -> str | None:
    """One line when the decoded image is one value everywhere (a blank, or a file that decoded to nothing): nothing
    a model or a detector says about it is a reading of a scan. None for any image with two different pixels."""
    if all(low == high for low, high in image.getextrema()):
        return (f"{name} is one value everywhere (a blank image, or a file that decoded to nothing): what the model "
                "says about it is not a reading of a scan.")
    return None


def check_pixels(name: str, width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise UserFacingError(
            f"{name} is {width}x{height} = {width * height / 1e6:.0f} MP; the limit is {MAX_IMAGE_PIXELS / 1e6:.0f} MP."
        )


def _decode_raster(path: Path) -> Image.Image:
    name = path.name
    try:
        with _pil_open(path) as im:
            if im.format not in RASTER_FORMATS:
                raise UserFacingError(f"{name} is a {im.format} image; upload a PNG, JPEG or DICOM image.")
            check_pixels(name, *im.size)
            im.load()  # decodes now, so truncation is caught here and not inside the model
            im = ImageOps.exif_transpose(im)
            return to_rgb8(im)
    except UserFacingError:
        raise
    except Image.DecompressionBombError:
        raise UserFacingError(f"{name} is too large to decode safely; the limit is {MAX_IMAGE_PIXELS / 1e6:.0f} MP.") from None
    except (UnidentifiedImageError, ImportError):  # ImportError: a replaced opener's plugin hunt, see _pil_open
        raise UserFacingError(f"{name} is not a PNG, JPEG or DICOM image.") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UserFacingError(f"{name} could not be decoded (truncated or corrupt image: {e}).") from None


def to_rgb8(im: Image.Image) -> Image.Image:
    """Any PIL mode (1, L, P, LA, RGBA, I;16, I, F, CMYK...) to RGB uint8, as a new image without metadata."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _gray_to_rgb(rescale_to_uint8(np.asarray(im, dtype=np.float64)))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent parts become black, the usual background of a medical image.
        rgba = im.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        im = Image.alpha_composite(black, rgba)
    return Image.fromarray(np.asarray(im.convert("RGB"), dtype=np.uint8), mode="RGB")


def rescale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Min-max stretch to 0..255; a flat image becomes black instead of dividing by zero."""
    values = np.nan_to_num(values.astype(np.float64))
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.stack([gray] * 3, axis=-1), mode="RGB")

