"""Open an uploaded PNG, JPEG or DICOM file as an 8-bit RGB PIL image, or fail with one clear line.

Every image the models see goes through `load_image`. The result is a fresh image with no metadata: EXIF and DICOM
tags (patient name, IDs, dates) never travel further than this module, and error messages never quote tag values.
"""
import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from medvlm.errors import UserFacingError
from medvlm.settings import MAX_IMAGE_PIXELS, MAX_UPLOAD_BYTES

RASTER_FORMATS = ("PNG", "JPEG")
# Pillow's own opener, taken before anything can replace it: importing ultralytics swaps PIL.Image.open for a wrapper
# that, on a file Pillow cannot identify, tries to install and import a HEIF plugin (an ImportError offline).
_pil_open = Image.open
DICOM_SUFFIXES = (".dcm", ".dicom")


def fingerprint(image: Image.Image) -> str:
    """The one identity of an image's content (the review database's image_hash, batching by image): its decoded
    pixels, so the same scan is one image whatever file, format or metadata it came in."""
    digest = hashlib.blake2b(f"{image.mode}:{image.size}:".encode(), digest_size=16)
    digest.update(image.tobytes())
    return digest.hexdigest()


def load_image(path) -> Image.Image:
    """Decode `path` into an RGB, 8-bit image. Raises UserFacingError for anything that is not a usable image."""
    path = Path(path)
    name = path.name
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        raise UserFacingError(f"Cannot read {name}: the file is missing or unreadable.") from None
    if size == 0:
        raise UserFacingError(f"{name} is empty (0 bytes): upload a PNG, JPEG or DICOM image.")
    if size > MAX_UPLOAD_BYTES:
        raise UserFacingError(f"{name} is {size / 2**20:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB.")
    if head[128:132] == b"DICM" or path.suffix.lower() in DICOM_SUFFIXES:
        return _decode_dicom(path)
    return _decode_raster(path)


def blank_warning(image: Image.Image, name: str) -> str | None:
    """One line when the decoded image is one value everywhere (a blank, or a file that decoded to nothing): nothing
    a model or a detector says about it is a reading of a scan. None for any image with two different pixels."""
    if all(low == high for low, high in image.getextrema()):
        return (f"{name} is one value everywhere (a blank image, or a file that decoded to nothing): what the model "
                "says about it is not a reading of a scan.")
    return None


def _check_pixels(name: str, width: int, height: int) -> None:
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
            _check_pixels(name, *im.size)
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
        return _gray_to_rgb(_rescale_to_uint8(np.asarray(im, dtype=np.float64)))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent parts become black, the usual background of a medical image.
        rgba = im.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        im = Image.alpha_composite(black, rgba)
    return Image.fromarray(np.asarray(im.convert("RGB"), dtype=np.uint8), mode="RGB")


def _rescale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Min-max stretch to 0..255; a flat image becomes black instead of dividing by zero."""
    values = np.nan_to_num(values.astype(np.float64))
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.stack([gray] * 3, axis=-1), mode="RGB")


def _decode_dicom(path: Path) -> Image.Image:
    """DICOM pixel data -> modality LUT -> window (centre/width, else min-max) -> 8-bit RGB."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, convert_color_space

    name = path.name
    try:
        # force=True reads files without the 128-byte preamble; the pixel checks below reject non-DICOM content.
        ds = pydicom.dcmread(path, force=True)
    except Exception as e:  # pydicom raises many types; the message must not quote tag values
        raise UserFacingError(f"{name} is not a readable DICOM file ({type(e).__name__}).") from None
    if "PixelData" not in ds:
        raise UserFacingError(f"{name} is a DICOM file without image pixel data.")
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
    except Exception:
        raise UserFacingError(f"{name} is a malformed DICOM file (no valid image size).") from None
    _check_pixels(name, columns, rows)
    try:
        pixels = ds.pixel_array
    except Exception as e:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        detail = f"transfer syntax {syntax.name}" if syntax is not None else type(e).__name__
        raise UserFacingError(f"{name}: the DICOM pixel data could not be decoded ({detail}).") from None

    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[frames // 2]  # a multi-frame series is shown by its middle frame
    if samples == 3:
        photometric = str(ds.get("PhotometricInterpretation", "RGB"))
        if photometric.startswith("YBR"):
            pixels = convert_color_space(pixels, photometric, "RGB")
        return Image.fromarray(_rescale_to_uint8(pixels) if pixels.dtype != np.uint8 else pixels, mode="RGB")
    if pixels.ndim != 2:
        raise UserFacingError(f"{name} is a malformed DICOM file (unexpected pixel array shape {pixels.shape}).")

    values = apply_modality_lut(pixels, ds).astype(np.float64)
    gray = _window(values, ds.get("WindowCenter"), ds.get("WindowWidth"))
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        gray = 255 - gray  # MONOCHROME1 stores low values as white
    return _gray_to_rgb(gray)


def _window(values: np.ndarray, center, width) -> np.ndarray:
    """DICOM linear VOI window (PS3.3 C.11.2.1.2) to 0..255; min-max when the header has no usable window."""
    try:
        c, w = float(_first(center)), float(_first(width))
    except (TypeError, ValueError, IndexError):
        return _rescale_to_uint8(values)
    if not np.isfinite(c) or not np.isfinite(w) or w < 1:
        return _rescale_to_uint8(values)
    scaled = ((values - (c - 0.5)) / max(w - 1.0, 1.0) + 0.5).clip(0.0, 1.0)
    return np.round(scaled * 255.0).astype(np.uint8)


def _first(value):
    """A multi-valued DICOM window lists alternatives; the first is the default view."""
    from pydicom.multival import MultiValue

    return value[0] if isinstance(value, (MultiValue, list, tuple)) else value
