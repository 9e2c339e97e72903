"""A corpus of hostile uploads, built on the fly (nothing binary is committed): what a careless or malicious user sends."""
from pathlib import Path

import numpy as np
from PIL import Image
from test_images import PATIENT, PATIENT_ID, write_dicom


def _png(path: Path, image: Image.Image, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def _dicom_variant(path: Path, kind: str) -> Path:
    import pydicom
    from pydicom.uid import JPEG2000Lossless

    pixels = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 7) % 4096
    if kind == "monochrome1":
        return write_dicom(path, pixels, PhotometricInterpretation="MONOCHROME1")
    if kind == "rgb":
        write_dicom(path, pixels)
        ds = pydicom.dcmread(path)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelData = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8).tobytes()
        ds.save_as(path)
        return path
    if kind == "multi-frame":
        write_dicom(path, pixels)
        ds = pydicom.dcmread(path)
        ds.NumberOfFrames = 3
        ds.PixelData = np.stack([pixels] * 3).tobytes()
        ds.save_as(path)
        return path
    if kind == "no-pixels":
        write_dicom(path, pixels)
        ds = pydicom.dcmread(path)
        del ds.PixelData
        ds.save_as(path)
        return path
    if kind == "undecodable-compressed":
        write_dicom(path, pixels)
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 100])
        ds["PixelData"].VR = "OB"
        ds.save_as(path, enforce_file_format=True)
        return path
    if kind == "garbage-after-preamble":
        path.write_bytes(b"\x00" * 128 + b"DICM" + bytes(range(256)) * 4)
        return path
    if kind == "rows-disagree":
        write_dicom(path, pixels)
        ds = pydicom.dcmread(path)
        ds.Rows, ds.Columns = 512, 512
        ds.save_as(path)
        return path
    raise ValueError(kind)


DICOM_KINDS = ["monochrome1", "rgb", "multi-frame", "no-pixels", "undecodable-compressed", "garbage-after-preamble", "rows-disagree"]
IDENTIFYING = (PATIENT, PATIENT_ID, "19700101")


def build(folder: Path, real_jpeg: Path) -> dict[str, Path]:
    """name -> file. Names are what the user's file is called; several lie about their format."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    gray = Image.fromarray(rng.integers(0, 255, (64, 64), np.uint8))
    files = {}
    files["zero-byte"] = folder / "zero.png"
    files["zero-byte"].write_bytes(b"")
    data = real_jpeg.read_bytes()
    files["truncated"] = folder / "truncated.jpg"
    files["truncated"].write_bytes(data[: len(data) // 3])
    files["text-as-image"] = folder / "notes.png"
    files["text-as-image"].write_text("patient notes, not an image\n" * 10)
    files["html-svg-as-png"] = folder / "vector.png"
    files["html-svg-as-png"].write_text('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>')
    files["bomb"] = _png(folder / "bomb.png", Image.new("L", (10000, 6000)), optimize=True)
    files["16-bit"] = _png(folder / "sixteen.png", Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)))
    files["palette"] = _png(folder / "palette.png", gray.convert("P"))
    files["cmyk"] = _png(folder / "cmyk.jpg", gray.convert("CMYK"))
    files["1x1"] = _png(folder / "one.png", Image.new("RGB", (1, 1), (200, 10, 10)))
    files["10000x2"] = _png(folder / "strip.png", Image.new("L", (10000, 2), 128))
    frames = [Image.new("RGB", (32, 32), (k * 60, 0, 0)) for k in range(4)]
    files["animated-gif"] = folder / "anim.gif"
    frames[0].save(files["animated-gif"], save_all=True, append_images=frames[1:], duration=50, loop=0)
    for fmt, suffix in (("BMP", "bmp"), ("TIFF", "tif"), ("WEBP", "webp")):
        files[fmt.lower()] = _png(folder / f"scan.{suffix}", gray.convert("RGB"), format=fmt)
    exif = Image.Exif()
    exif[0x010E] = "x" * 5_000_000  # ImageDescription: a 5 MB EXIF blob
    files["5MB-exif"] = _png(folder / "exif.png", gray.convert("RGB"), exif=exif.tobytes())
    files["html-filename"] = _png(folder / '<img src=x onerror=alert(1)><b>bold.png', gray)
    files["unicode-filename"] = _png(folder / ("é" * 125 + ".png"), gray)
    for kind in DICOM_KINDS:
        files[f"dicom-{kind}"] = _dicom_variant(folder / f"{kind}.dcm", kind)
    return files
