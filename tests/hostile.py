"""A corpus of hostile uploads, built on the fly (nothing binary is committed): what a careless or malicious user sends.
Also the series and volumes they are made from (write_series, write_nifti), which tests and bench/images.py use."""
import zipfile
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


def write_series(folder: Path, count: int = 12, size: int = 128, series_uid: str = "1.2.826.0.1.3680043.8.498.1",
                 order=None, **overrides) -> list[Path]:
    """A CT series of `count` slices made from pydicom's CT_small.dcm (128x128, scaled up by a whole factor to
    `size`): slice k is CT_small + 10 k, at z = 2.5 k mm, InstanceNumber counting down (so that only the positions
    give the right order), written in `order` (default: shuffled). overrides: tag -> value, or tag -> {k: value}."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    pixels = np.kron(base.pixel_array, np.ones((size // 128, size // 128), dtype=base.pixel_array.dtype))
    dtype = pixels.dtype
    order = list(order) if order is not None else list(np.random.default_rng(count).permutation(count))
    paths = []
    for written, k in enumerate(order):
        ds = base.copy()
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series_uid, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = PATIENT, PATIENT_ID, "19700101"
        ds.Rows, ds.Columns = pixels.shape
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, 2.5 * k]
        ds.InstanceNumber = count - k
        for tag, value in overrides.items():
            value = value.get(k) if isinstance(value, dict) else value
            if value is not None:
                setattr(ds, tag, value)
        ds.PixelData = (pixels + 10 * k).astype(dtype).tobytes()
        paths.append(folder / f"slice{written:04d}.dcm")
        ds.save_as(paths[-1])
    return paths


def zip_files(path: Path, files, names=None) -> Path:
    """names are stored as given (zipfile's write would clean "../" and "/" away)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for k, file in enumerate(files):
            archive.writestr(names[k] if names else Path(file).name, Path(file).read_bytes())
    return path


def write_nifti(path: Path, volume: np.ndarray, affine=None, **header) -> Path:
    import nibabel as nib

    image = nib.Nifti1Image(volume, np.eye(4) if affine is None else affine)
    for key, value in header.items():
        image.header[key] = value
    nib.save(image, path)
    return path


def _series_variant(folder: Path, kind: str) -> Path:
    """A .zip of a CT series, damaged in one way."""
    slices = folder / f"{kind}-slices"
    if kind == "zip-slip":
        return zip_files(folder / "slip.zip", write_series(slices, 3), ["a.dcm", "../../escaped.dcm", "c.dcm"])
    if kind == "zip-absolute":
        return zip_files(folder / "absolute.zip", write_series(slices, 2), ["/etc/cron.d/x.dcm", "b.dcm"])
    if kind == "zip-bomb":
        with zipfile.ZipFile(folder / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("slice.dcm", b"\x00" * 50_000_000)
        return folder / "bomb.zip"
    if kind == "zip-2001-files":
        with zipfile.ZipFile(folder / "many.zip", "w", zipfile.ZIP_STORED) as archive:
            for k in range(2001):
                archive.writestr(f"s{k}.dcm", b"x")
        return folder / "many.zip"
    if kind == "zip-not-dicom":
        notes = folder / "notes.txt"
        notes.write_text("not a scan")
        return zip_files(folder / "notes.zip", [notes])
    if kind == "series-mixed-sizes":
        paths = write_series(slices, 2) + write_series(folder / "big", 2, size=256, order=[2, 3])
        return zip_files(folder / "sizes.zip", paths, [f"s{k}.dcm" for k in range(len(paths))])
    if kind == "series-mixed-orientations":
        return zip_files(folder / "orient.zip", write_series(slices, 4, ImageOrientationPatient={3: [0, 1, 0, 0, 0, -1]}))
    if kind == "series-mixed-modalities":
        return zip_files(folder / "modalities.zip", write_series(slices, 4, Modality={2: "MR"}))
    if kind == "series-missing-slices":
        paths = write_series(slices, 10)
        return zip_files(folder / "gaps.zip", [p for p in paths if pydicom_z(p) not in (10.0, 12.5, 15.0)])
    if kind == "series-duplicate-slices":
        paths = write_series(slices, 5)
        return zip_files(folder / "dupes.zip", paths + paths[:2], [p.name for p in paths] + ["dup1.dcm", "dup2.dcm"])
    if kind == "dicom-voi-lut-wrong-length":
        from pydicom.dataset import Dataset

        path = write_series(slices, 1)[0]
        import pydicom

        ds = pydicom.dcmread(path)
        item = Dataset()
        item.LUTDescriptor = [256, 0, 8]
        item.add_new(0x00283006, "US", list(range(100)))  # LUTData: 100 entries where 256 are declared
        ds.VOILUTSequence = [item]
        ds.save_as(path)
        return path
    raise ValueError(kind)


def pydicom_z(path: Path) -> float:
    import pydicom

    return float(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient[2])


def _nifti_variant(folder: Path, kind: str) -> Path:
    volume = np.random.default_rng(1).normal(100, 20, (24, 20, 16)).astype(np.float32)
    if kind == "nifti-broken-header":
        path = write_nifti(folder / "broken.nii", volume)
        data = bytearray(path.read_bytes())
        data[0:4] = (12345).to_bytes(4, "little")  # sizeof_hdr must be 348
        data[40:48] = b"\xff" * 8
        path.write_bytes(bytes(data))
        return path
    if kind == "nifti-nan":
        volume[3:9, 2:6, :] = np.nan
        return write_nifti(folder / "nan.nii.gz", volume)
    if kind == "nifti-4d":
        return write_nifti(folder / "fmri.nii.gz", np.stack([volume] * 3, axis=-1))
    if kind == "nifti-huge":
        path = write_nifti(folder / "huge.nii", volume[:2, :2, :2])
        data = bytearray(path.read_bytes())
        data[40:56] = np.array([3, 30000, 30000, 30000, 1, 1, 1, 1], "<i2").tobytes()  # dim: 27e12 voxels declared
        path.write_bytes(bytes(data))
        return path
    if kind == "nifti-truncated":
        path = write_nifti(folder / "short.nii", volume)
        path.write_bytes(path.read_bytes()[:1000])
        return path
    raise ValueError(kind)


SERIES_KINDS = ["zip-slip", "zip-absolute", "zip-bomb", "zip-2001-files", "zip-not-dicom", "series-mixed-sizes",
                "series-mixed-orientations", "series-mixed-modalities", "series-missing-slices", "series-duplicate-slices",
                "dicom-voi-lut-wrong-length"]
NIFTI_KINDS = ["nifti-broken-header", "nifti-nan", "nifti-4d", "nifti-huge", "nifti-truncated"]
# Shown, with one line saying what is odd; every other series and volume kind is refused.
LOADED_WITH_A_NOTE = ("series-missing-slices", "series-duplicate-slices", "dicom-voi-lut-wrong-length", "nifti-nan")
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
    for kind in SERIES_KINDS:
        files[kind] = _series_variant(folder, kind)
    for kind in NIFTI_KINDS:
        files[kind] = _nifti_variant(folder, kind)
    return files
