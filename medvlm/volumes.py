"""A scan as a radiologist reads it: a stack of slices (one PNG or JPEG, one DICOM file, several files of a DICOM
series or a .zip of them, a multi-frame DICOM, a NIfTI volume) and a window to read them in.

`open_scan(paths)` reads an upload into a `Scan`; `Scan.render(index, window, plane)` is the 8-bit RGB picture of one
slice in one window: what the clinician sees and exactly what the model and the detector are given. Windows go
through pydicom's VOI functions (`apply_windowing`: LINEAR, LINEAR_EXACT, SIGMOID; `apply_voi`: a VOI LUT Sequence)
after the modality LUT. A Scan keeps the stored values and each slice's rescale, not a float copy, so a series holds
about its raw voxels. Like `medvlm.images`, nothing leaves here with a DICOM tag's value: no patient name, ID or date
in a Scan, a picture or a message.
"""
import copy
import functools
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from medvlm.errors import UserFacingError
from medvlm.images import check_pixels, load_raster, rescale_to_uint8
from medvlm.settings import MAX_ARCHIVE_BYTES, MAX_SERIES_FILES, MAX_UPLOAD_BYTES, MAX_VOLUME_VOXELS, MAX_ZIP_RATIO

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NIFTI_PLANES = ("axial", "coronal", "sagittal")
SLICES = "slices"  # a DICOM stack's one plane: the one it was acquired in


@dataclass(frozen=True)
class Window:
    """A VOI transform: width and level (centre) in the scan's modality units (Hounsfield units for CT), or one of
    the header's VOI LUTs (lut: its index in the VOI LUT Sequence)."""

    name: str
    width: float
    level: float
    function: str = "LINEAR"  # DICOM's VOI LUT Function: LINEAR, LINEAR_EXACT or SIGMOID
    lut: int | None = None
    lut_bits: int = 16  # the bits of its entries: its output is 0 .. 2**lut_bits - 1

    def label(self) -> str:
        if self.lut is not None:
            return f"{self.name} (the header's lookup table)"
        return f"{self.name} {_number(self.width)}/{_number(self.level)}".replace("-", "−")


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


# Width/level as OHIF shows them for CT, and the common neuro and chest ones.
CT_PRESETS = (Window("soft tissue", 400, 40), Window("lung", 1500, -600), Window("liver", 150, 90), Window("bone", 2500, 480),
              Window("brain", 80, 40), Window("subdural", 200, 75), Window("stroke", 40, 40), Window("mediastinum", 350, 50))


@dataclass(eq=False)
class Scan:
    """voxels: (slices, rows, columns) stored values of a DICOM stack, or a NIfTI volume as (x, y, z) in RAS order;
    colour pictures are (slices, rows, columns, 3) uint8 and have no windows. A slice's modality values are
    stored * slope[k] + intercept[k]."""

    name: str
    voxels: np.ndarray
    kind: str  # "raster", "dicom" or "nifti"
    modality: str = ""
    slope: np.ndarray = field(default_factory=lambda: np.ones(1, np.float32))
    intercept: np.ndarray = field(default_factory=lambda: np.zeros(1, np.float32))
    windows: tuple[Window, ...] = ()
    monochrome1: bool = False
    voi_luts: object = None  # a Dataset holding only the header's VOI LUT Sequence (apply_voi reads it from there)
    zooms: tuple = (1.0, 1.0, 1.0)  # NIfTI voxel sizes in RAS order, for the aspect of coronal and sagittal slices
    notes: tuple[str, ...] = ()  # one line each: series left out, duplicate slices dropped, gaps, NaNs

    @property
    def colour(self) -> bool:
        return self.voxels.dtype == np.uint8 and self.voxels.ndim == 4

    @property
    def planes(self) -> tuple[str, ...]:
        return NIFTI_PLANES if self.kind == "nifti" else (SLICES,)

    def slice_count(self, plane: str = "") -> int:
        if self.kind != "nifti":
            return len(self.voxels)
        return self.voxels.shape[2 - NIFTI_PLANES.index(plane or NIFTI_PLANES[0])]

    def middle(self, plane: str = "") -> int:
        return self.slice_count(plane) // 2

    @property
    def default_window(self) -> Window | None:
        """The header's own window; without one, the full range of the values (the last listed)."""
        if not self.windows:
            return None
        return self.windows[0] if self.windows[0].name.startswith("header") else self.windows[-1]

    def window(self, name: str) -> Window | None:
        """The window of this name (a preset, the header's, the full range); None for a colour picture."""
        return next((w for w in self.windows if w.name == name), self.default_window)

    def stored_slice(self, index: int, plane: str = "") -> np.ndarray:
        """The slice as stored; a NIfTI slice turned so that the patient's right is on the image's left and
        anterior (or superior) is up, as radiologists read them."""
        if self.kind != "nifti":
            return self.voxels[index]
        axis = 2 - NIFTI_PLANES.index(plane or NIFTI_PLANES[0])  # axial fixes z, coronal y, sagittal x
        at = [slice(None)] * 3
        at[axis] = index
        return self.voxels[tuple(at)].T[::-1, ::-1]  # a view (np.take would copy, slowly, through the strides)

    def values(self, index: int, plane: str = "") -> np.ndarray:
        """The slice in modality units, float32 (a NaN voxel is read as the volume's lowest value)."""
        raw = self.stored_slice(index, plane)
        k = index if len(self.slope) > 1 else 0
        values = raw.astype(np.float32) * self.slope[k] + self.intercept[k]
        return np.nan_to_num(values, nan=self._lowest) if self._has_nan else values

    def render(self, index: int | None = None, window: Window | None = None, plane: str = "") -> Image.Image:
        """One slice in one window as an 8-bit RGB picture (a fresh image, no metadata)."""
        plane = plane or self.planes[0]
        index = self.middle(plane) if index is None else index
        if not 0 <= index < self.slice_count(plane):
            raise UserFacingError(f"Slice {index + 1} is outside this scan's 1–{self.slice_count(plane)}.")
        if self.colour:
            return Image.fromarray(np.ascontiguousarray(self.stored_slice(index, plane)), mode="RGB")
        gray = apply_window(self.values(index, plane), window or self.default_window, self.voi_luts)
        if self.monochrome1:
            gray = 255 - gray
        image = Image.fromarray(np.ascontiguousarray(gray), mode="L")
        if self.kind == "nifti":
            image = _true_aspect(image, plane, self.zooms)
        return image.convert("RGB")

    def where(self, index: int, window: Window | None, plane: str = "") -> str:
        """What the status line says the model sees: "slice 42/120 (axial), window lung 1500/−600"."""
        plane = plane or self.planes[0]
        parts = []
        if self.slice_count(plane) > 1 or self.kind == "nifti":
            parts.append(f"slice {index + 1}/{self.slice_count(plane)}" + (f" ({plane})" if plane != SLICES else ""))
        if window is not None and not self.colour:
            parts.append(f"window {window.label()}")
        return ", ".join(parts)

    def __post_init__(self):
        self._has_nan = self.voxels.dtype.kind == "f" and bool(np.isnan(self.voxels).any())
        self._lowest = float(np.nanmin(self.voxels)) if self._has_nan and not np.isnan(self.voxels).all() else 0.0

    @property
    def nbytes(self) -> int:
        return self.voxels.nbytes + self.slope.nbytes + self.intercept.nbytes


def apply_window(values: np.ndarray, window: Window, voi_luts=None) -> np.ndarray:
    """Modality values -> 0..255 through pydicom's VOI functions: a VOI LUT Sequence's table, else the window."""
    from pydicom.pixels.processing import apply_voi, apply_windowing

    if window.lut is not None:
        out = apply_voi(np.round(values).astype(np.int32), voi_luts, index=window.lut).astype(np.float32)
        return np.round(out * (255.0 / (2**window.lut_bits - 1))).clip(0, 255).astype(np.uint8)
    out = apply_windowing(values, _view(window))
    np.add(out, 0.5, out=out)  # rounds 0..255 on the cast below, without another array
    return out.astype(np.uint8)


@functools.lru_cache(maxsize=256)
def _view(window: Window):
    """The dataset pydicom's apply_windowing reads a window from: 8 stored bits and no rescale, so that its output
    range is 0..255 itself. Made once per window (a Dataset costs a slice's worth of time to build)."""
    from pydicom.dataset import Dataset

    view = Dataset()
    view.PhotometricInterpretation, view.BitsStored, view.PixelRepresentation = "MONOCHROME2", 8, 0
    view.WindowCenter, view.WindowWidth, view.VOILUTFunction = window.level, window.width, window.function
    return view


def full_range(values_min: float, values_max: float) -> Window:
    """The window that spans the scan's values: what a scan without a window of its own is first shown in."""
    return Window("full range", max(float(values_max - values_min), 1e-6), float(values_min + values_max) / 2, "LINEAR_EXACT")


# --- reading an upload -------------------------------------------------------------------------------------------


def open_scan(paths) -> Scan:
    """An upload (one path, or several for a DICOM series) -> a Scan. Raises UserFacingError, one line, for anything
    that is not a usable scan; nothing is written anywhere."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else list(paths or []))]
    if not paths:
        raise UserFacingError("Upload an image first.")
    if len(paths) > MAX_SERIES_FILES:
        raise UserFacingError(f"{len(paths):,} files in one upload; the limit is {MAX_SERIES_FILES:,} (one series).")
    if len(paths) == 1:
        path = paths[0]
        head = _head(path)
        if head[:4] == b"PK\x03\x04":
            return _dicom_scan(_zip_members(path), path.name, archive=True)
        if path.name.lower().endswith(NIFTI_SUFFIXES) or head[344:348] in (b"n+1\x00", b"ni1\x00"):
            return _nifti_scan(path)
        if not _is_dicom(path, head):
            image = load_raster(path)
            return Scan(path.name, np.asarray(image)[None], "raster")
    for path in paths:
        _head(path)  # each file's size checks
    return _dicom_scan([(p.name, p) for p in paths], paths[0].name if len(paths) == 1 else f"{len(paths)} files")


def _head(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(352)
    except OSError:
        raise UserFacingError(f"Cannot read {path.name}: the file is missing or unreadable.") from None
    if size == 0:
        raise UserFacingError(f"{path.name} is empty (0 bytes): upload a PNG, JPEG, DICOM or NIfTI image.")
    if size > MAX_UPLOAD_BYTES:
        raise UserFacingError(f"{path.name} is {size / 2**20:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB.")
    return head


def _is_dicom(path: Path, head: bytes) -> bool:
    return head[128:132] == b"DICM" or path.suffix.lower() in (".dcm", ".dicom")


def _zip_members(path: Path) -> list[tuple[str, io.BytesIO]]:
    """The files of a .zip, read into memory (nothing is extracted to disk). Refused whole: names that climb out of
    the archive or start at the root, more files than a series may have, members that unpack to more than their
    declared size or far more than they pack to (zip bombs), encryption."""
    name = path.name
    try:
        archive = zipfile.ZipFile(path)
        infos = [i for i in archive.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise UserFacingError(f"{name} is not a readable .zip archive ({type(e).__name__}).") from None
    with archive:
        for info in infos:
            member = PurePosixPath(info.filename.replace("\\", "/"))
            if member.is_absolute() or ".." in member.parts or (member.parts and ":" in member.parts[0]):
                raise UserFacingError(f"{name} holds a file named outside the archive ({info.filename!r}): refused.")
            if info.flag_bits & 0x1:
                raise UserFacingError(f"{name} is encrypted: upload an archive without a password.")
        if len(infos) > MAX_SERIES_FILES:
            raise UserFacingError(f"{name} holds {len(infos):,} files; the limit is {MAX_SERIES_FILES:,} (one series).")
        total = sum(i.file_size for i in infos)
        if total > MAX_ARCHIVE_BYTES:
            raise UserFacingError(f"{name} unpacks to {total / 2**20:,.0f} MB; the limit is {MAX_ARCHIVE_BYTES // 2**20:,} MB.")
        members = []
        for info in infos:
            if info.file_size > 1_000_000 and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
                ratio = info.file_size // max(info.compress_size, 1)
                raise UserFacingError(f"{name} looks like a zip bomb ({info.filename!r} unpacks {ratio:,} times larger): refused.")
            try:
                with archive.open(info) as f:
                    data = f.read(info.file_size + 1)  # never more than declared, whatever the stream says
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
                raise UserFacingError(f"{name}: {info.filename!r} could not be unpacked ({type(e).__name__}).") from None
            if len(data) > info.file_size:
                raise UserFacingError(f"{name}: {info.filename!r} unpacks to more than its declared size: refused.")
            members.append((PurePosixPath(info.filename).name, io.BytesIO(data)))
    if not members:
        raise UserFacingError(f"{name} is an empty archive: zip the DICOM files of one series.")
    return members


# --- DICOM ---------------------------------------------------------------------------------------------------------


@dataclass
class _Slice:
    name: str
    ds: object
    position: float | None = None


def _dicom_scan(files: list, upload_name: str, archive: bool = False) -> Scan:
    """files: (name, path or file object). One file may be multi-frame; several are one series (others named).
    In an archive or a series, a file that is no DICOM image is skipped and counted."""
    slices, skipped = [], 0
    for name, source in files:
        ds = _read_dicom(name, source, quiet=archive or len(files) > 1)
        if ds is None:
            skipped += 1
            continue
        slices.append(_Slice(name, ds))
    if not slices:
        raise UserFacingError(f"{upload_name} holds no DICOM image ({skipped} files without pixel data or not DICOM).")
    notes = [f"{skipped} files that are not DICOM images were skipped."] if skipped else []
    if len(slices) == 1:
        return _single_file(slices[0], notes)
    if any(_frames(s.ds) > 1 for s in slices):
        raise UserFacingError(f"{upload_name}: a multi-frame DICOM file is a volume itself: upload it alone.")
    slices, more = _one_series(slices, upload_name)
    notes += more
    first = slices[0].ds
    for s in slices:
        _check_size(s.name, s.ds, 1)
    pixels = _voxels(upload_name, slices, (len(slices), int(first.Rows), int(first.Columns)))
    if pixels.ndim == 4:
        return _colour_scan(upload_name, pixels, notes)
    slope = np.array([_rescale(s.ds)[0] for s in slices], np.float32)
    intercept = np.array([_rescale(s.ds)[1] for s in slices], np.float32)
    middle = slices[len(slices) // 2].ds
    return _grey_scan(upload_name, pixels, slope, intercept, middle, notes)


def _read_dicom(name: str, source, quiet: bool):
    import pydicom

    try:
        # force=True reads files without the 128-byte preamble; the pixel checks below reject non-DICOM content.
        ds = pydicom.dcmread(source, force=True)
    except Exception as e:  # pydicom raises many types; the message must not quote tag values
        if quiet:
            return None
        raise UserFacingError(f"{name} is not a readable DICOM file ({type(e).__name__}).") from None
    if "PixelData" not in ds:
        if quiet:
            return None
        raise UserFacingError(f"{name} is a DICOM file without image pixel data.")
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        if rows < 1 or columns < 1:
            raise ValueError
    except Exception:
        raise UserFacingError(f"{name} is a malformed DICOM file (no valid image size).") from None
    check_pixels(name, columns, rows)
    return ds


def _frames(ds) -> int:
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def _check_size(name: str, ds, frames: int) -> None:
    """An uncompressed file whose Rows x Columns x frames needs more bytes than its pixel data holds says so,
    instead of a decoder error that blames the transfer syntax."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and syntax.is_compressed:
        return
    try:
        bits, samples = int(ds.BitsAllocated), int(ds.get("SamplesPerPixel", 1) or 1)
        declared = int(ds.Rows) * int(ds.Columns) * frames * samples * bits // 8
        present = len(ds.PixelData)
    except Exception:
        return  # pydicom's own decoder reports what is wrong
    if present < declared:
        raise UserFacingError(
            f"{name}: the header declares {int(ds.Columns)}×{int(ds.Rows)} pixels × {frames} frame(s) at {bits} bits "
            f"({_size(declared)}), but the file holds {_size(present)} of pixel data: truncated or mislabelled.")


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.1f} KB" if n >= 1024 else f"{n} bytes"


def _decode(name: str, ds):
    try:
        return ds.pixel_array
    except Exception as e:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        detail = f"transfer syntax {syntax.name}" if syntax is not None else type(e).__name__
        raise UserFacingError(f"{name}: the DICOM pixel data could not be decoded ({detail}).") from None


def _colour_scan(name: str, stack: np.ndarray, notes: list) -> Scan:
    """(slices, rows, columns, 3) as decoded: pydicom's pixel_array already gives YBR_FULL(_422) as RGB (converting
    again drew every colour wrong); 16- or 32-bit samples are scaled to 8 bits over the whole stack."""
    if stack.ndim != 4 or stack.shape[-1] != 3:
        raise UserFacingError(f"{name} is a malformed DICOM file (unexpected colour pixel array shape {stack.shape[1:]}).")
    return Scan(name, stack if stack.dtype == np.uint8 else rescale_to_uint8(stack), "dicom", notes=tuple(notes))


def _single_file(s: _Slice, notes: list) -> Scan:
    ds, frames = s.ds, _frames(s.ds)
    if frames * int(ds.Rows) * int(ds.Columns) > MAX_VOLUME_VOXELS:
        raise UserFacingError(f"{s.name} holds {frames:,} frames of {int(ds.Columns)}×{int(ds.Rows)}; "
                              f"the limit is {MAX_VOLUME_VOXELS / 2**20:.0f} M voxels.")
    _check_size(s.name, ds, frames)
    pixels = _decode(s.name, ds)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    stack = pixels if frames > 1 else pixels[None]
    if samples == 3:
        return _colour_scan(s.name, stack, notes)
    if stack.ndim != 3:
        raise UserFacingError(f"{s.name} is a malformed DICOM file (unexpected pixel array shape {pixels.shape}).")
    if ds.get("ModalityLUTSequence"):  # a lookup table, not a rescale: applied once, kept as float32
        from pydicom.pixels import apply_modality_lut

        stack = np.stack([apply_modality_lut(frame, ds) for frame in stack]).astype(np.float32)
        slope, intercept = np.ones(1, np.float32), np.zeros(1, np.float32)
    else:
        slope, intercept = (np.array([v], np.float32) for v in _rescale(ds))
    return _grey_scan(s.name, stack, slope, intercept, ds, notes)


def _rescale(ds) -> tuple[float, float]:
    """RescaleSlope/Intercept, from the top level or (an enhanced multi-frame file) its shared functional groups."""
    source = ds
    if "RescaleSlope" not in ds and ds.get("SharedFunctionalGroupsSequence"):
        groups = ds.SharedFunctionalGroupsSequence[0]
        if groups.get("PixelValueTransformationSequence"):
            source = groups.PixelValueTransformationSequence[0]
    try:
        slope, intercept = float(source.get("RescaleSlope", 1) or 1), float(source.get("RescaleIntercept", 0) or 0)
    except (TypeError, ValueError):
        return 1.0, 0.0
    return (slope, intercept) if np.isfinite(slope) and np.isfinite(intercept) else (1.0, 0.0)


def _voxels(name: str, slices: list[_Slice], shape: tuple) -> np.ndarray:
    """The series' slices stacked: (slices, rows, columns), or (..., 3) for colour."""
    samples = int(slices[0].ds.get("SamplesPerPixel", 1) or 1)
    if np.prod(shape, dtype=np.int64) * samples > MAX_VOLUME_VOXELS:
        raise UserFacingError(f"{name} is {shape[0]:,} slices of {shape[2]}×{shape[1]}; the limit is {MAX_VOLUME_VOXELS / 2**20:.0f} M voxels.")
    first = _decode(slices[0].name, slices[0].ds)
    shape = (*shape, 3) if samples == 3 else shape
    if first.shape != shape[1:]:
        raise UserFacingError(f"{name}: {slices[0].name} is a malformed DICOM file (unexpected pixel array shape {first.shape}).")
    out = np.empty(shape, dtype=first.dtype)
    out[0] = first
    for k, s in enumerate(slices[1:], start=1):
        pixels = _decode(s.name, s.ds)
        if pixels.shape != shape[1:] or pixels.dtype != out.dtype:
            raise UserFacingError(f"{name}: {s.name} does not match the series' other slices ({pixels.shape}, {pixels.dtype}).")
        out[k] = pixels
    return out


def _one_series(slices: list[_Slice], name: str) -> tuple[list[_Slice], list[str]]:
    """The largest series of the upload, its slices in order along the slice normal (else by InstanceNumber), with
    the lines a reader needs: other series left out, duplicates dropped, gaps."""
    groups: dict = {}
    for s in slices:
        groups.setdefault(str(s.ds.get("SeriesInstanceUID", "")), []).append(s)
    ordered = sorted(groups.values(), key=len, reverse=True)
    series, notes = ordered[0], []
    if len(ordered) > 1:
        counts = ", ".join(str(len(g)) for g in ordered[1:])
        notes.append(f"Showing the largest series ({len(series)} files); {len(ordered) - 1} other series ({counts} files) "
                     "left out: upload one series at a time.")
    for tag, what in (("Modality", "modalities"), ("Rows", "sizes"), ("Columns", "sizes"), ("SamplesPerPixel", "colour and grey")):
        if len({str(s.ds.get(tag, "")) for s in series}) > 1:
            raise UserFacingError(f"{name}: one series mixes {what}; upload files of one series, one size.")
    orientations = [_floats(s.ds.get("ImageOrientationPatient"), 6) for s in series]
    positions = [_floats(s.ds.get("ImagePositionPatient"), 3) for s in series]
    if all(o is not None for o in orientations) and all(p is not None for p in positions):
        if not np.allclose(orientations, orientations[0], atol=1e-3):
            raise UserFacingError(f"{name}: one series mixes slice orientations; upload one orientation at a time.")
        normal = np.cross(orientations[0][:3], orientations[0][3:])
        for s, p in zip(series, positions):
            s.position = float(np.dot(p, normal))
        unit = "mm"
    else:
        for k, s in enumerate(series):
            try:
                s.position = float(s.ds.get("InstanceNumber"))
            except (TypeError, ValueError):
                s.position = float(k)
        unit = "instance numbers"
    series.sort(key=lambda s: s.position)
    kept = [series[0]]
    for s in series[1:]:
        if abs(s.position - kept[-1].position) > 1e-3:
            kept.append(s)
    if len(kept) < len(series):
        notes.append(f"{len(series) - len(kept)} duplicate slices (same position) dropped.")
    steps = np.diff([s.position for s in kept])
    if len(steps) >= 2:
        usual = float(np.median(steps))
        missing = int(sum(round(step / usual) - 1 for step in steps if step > 1.5 * usual)) if usual > 0 else 0
        if missing:
            notes.append(f"The series has gaps: about {missing} slices missing (spacing {usual:g} {unit}).")
    return kept, notes


def _floats(value, count: int):
    try:
        out = np.array([float(v) for v in value], np.float64)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (count,) and np.isfinite(out).all() else None


def _grey_scan(name: str, stack: np.ndarray, slope, intercept, ds, notes: list) -> Scan:
    """A grey stack with its windows: the header's own first (its VOI LUTs, then each width/level it lists), the CT
    presets for CT, then the full range of its values."""
    from pydicom.dataset import Dataset

    windows, voi_luts = [], None
    header = _header_voi(ds)
    for k, item in enumerate(header.get("VOILUTSequence") or []):
        try:
            entries, data = int(item.LUTDescriptor[0]) or 65536, len(item.LUTData)
            if entries != data:
                notes.append(f"The header's lookup table {k + 1} declares {entries:,} entries and holds {data:,}: not offered.")
                continue
        except Exception:
            notes.append(f"The header's lookup table {k + 1} is malformed: not offered.")
            continue
        if voi_luts is None:
            voi_luts = Dataset()
            voi_luts.VOILUTSequence = [copy.deepcopy(i) for i in header.VOILUTSequence]
        # pydicom indexes an 8-bit table with uint8 indices (a table of more than 256 entries wraps), so every
        # table is handed to it declared 16-bit: the same entries, indexed in full.
        bits = int(item.LUTDescriptor[2])
        voi_luts.VOILUTSequence[k].LUTDescriptor = [entries % 65536, int(item.LUTDescriptor[1]), 16]
        windows.append(Window(f"header LUT {k + 1}", 0, 0, lut=k, lut_bits=bits))
    centres, widths = _multi(header.get("WindowCenter")), _multi(header.get("WindowWidth"))
    function = str(header.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    for k, (centre, width) in enumerate(zip(centres, widths)):
        minimum = 1 if function == "LINEAR" else 0
        if np.isfinite(centre) and np.isfinite(width) and width > minimum and function in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
            windows.append(Window("header" if len(centres) == 1 else f"header {k + 1}", width, centre, function))
    modality = str(ds.get("Modality", "") or "")
    if modality == "CT":
        windows += CT_PRESETS
    low, high = _value_range(stack, slope, intercept)
    windows.append(full_range(low, high))
    return Scan(name, stack, "dicom", modality, slope, intercept, tuple(windows),
                str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1", voi_luts, notes=tuple(notes))


def _header_voi(ds):
    """The dataset that holds the VOI: the file itself, or (enhanced multi-frame) its shared functional groups."""
    if "WindowCenter" in ds or "VOILUTSequence" in ds or not ds.get("SharedFunctionalGroupsSequence"):
        return ds
    groups = ds.SharedFunctionalGroupsSequence[0]
    return groups.FrameVOILUTSequence[0] if groups.get("FrameVOILUTSequence") else ds


def _multi(value) -> list[float]:
    if value is None:
        return []
    values = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    out = []
    for v in values:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(float("nan"))
    return out


def _value_range(stack: np.ndarray, slope, intercept) -> tuple[float, float]:
    low, high = float(np.nanmin(stack)) if stack.size else 0.0, float(np.nanmax(stack)) if stack.size else 0.0
    ends = np.array([low * slope + intercept, high * slope + intercept])
    ends = ends[np.isfinite(ends)]
    return (float(ends.min()), float(ends.max())) if ends.size else (0.0, 1.0)


# --- NIfTI ---------------------------------------------------------------------------------------------------------


def _nifti_scan(path: Path) -> Scan:
    """A 3-D NIfTI-1 or -2 volume through nibabel, turned to RAS (nibabel's io_orientation / apply_orientation, as
    views: no copy), its stored values kept with the header's scaling."""
    import nibabel as nib
    from nibabel.orientations import apply_orientation, io_orientation

    name = path.name
    try:
        image = nib.load(path)
        shape = tuple(int(n) for n in image.shape)
    except Exception as e:  # nibabel raises many types on a broken header
        raise UserFacingError(f"{name} is not a readable NIfTI file ({type(e).__name__}).") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise UserFacingError(f"{name} is not a NIfTI image.")
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise UserFacingError(f"{name} is {len(shape)}-D {shape}: upload one 3-D volume (a time series or a 2-D image is not supported).")
    if min(shape) < 1 or np.prod(shape, dtype=np.float64) > MAX_VOLUME_VOXELS:
        raise UserFacingError(f"{name} is {'×'.join(map(str, shape))} voxels; the limit is {MAX_VOLUME_VOXELS / 2**20:.0f} M voxels.")
    try:
        raw = np.asanyarray(image.dataobj.get_unscaled()).reshape(shape)
        slope, inter = image.dataobj.slope, image.dataobj.inter
        ornt = io_orientation(image.affine)
        voxels = apply_orientation(raw, ornt)
        zooms = tuple(float(z) for z in np.abs(np.asarray(image.header.get_zooms()[:3], np.float64))[ornt[:, 0].astype(int).argsort()])
    except UserFacingError:
        raise
    except Exception as e:
        raise UserFacingError(f"{name}: the NIfTI voxel data could not be read ({type(e).__name__}: truncated or corrupt).") from None
    if voxels.dtype.kind not in "uif":
        raise UserFacingError(f"{name} holds {voxels.dtype} voxels; medvlm reads grey-value volumes.")
    slope = float(slope) if slope is not None and np.isfinite(slope) and slope != 0 else 1.0
    inter = float(inter) if inter is not None and np.isfinite(inter) else 0.0
    notes = []
    if voxels.dtype.kind == "f":
        nans = int(np.isnan(voxels).sum())
        if nans == voxels.size:
            raise UserFacingError(f"{name} holds no numbers (every voxel is NaN).")
        if nans:
            notes.append(f"{nans:,} voxels are NaN (not a number): shown as the volume's lowest value.")
        if np.isinf(voxels).any():
            voxels = np.nan_to_num(voxels, nan=np.nan, posinf=np.finfo(voxels.dtype).max, neginf=np.finfo(voxels.dtype).min)
            notes.append("Infinite voxels are shown as the volume's extremes.")
    slope_a, inter_a = np.array([slope], np.float32), np.array([inter], np.float32)
    low, high = _value_range(voxels, slope, inter)  # NaN-blind; infinities were clipped above
    windows = []
    cal = (float(image.header.get("cal_min", 0) or 0), float(image.header.get("cal_max", 0) or 0))
    if np.isfinite(cal).all() and cal[1] > cal[0]:
        windows.append(Window("header", cal[1] - cal[0], (cal[0] + cal[1]) / 2, "LINEAR_EXACT"))
    if low <= -900:  # Hounsfield units: a CT volume
        windows += CT_PRESETS
    windows.append(full_range(low, high))
    zooms = tuple(z if np.isfinite(z) and z > 0 else 1.0 for z in zooms)
    return Scan(name, voxels, "nifti", "CT" if low <= -900 else "", slope_a, inter_a, tuple(windows), zooms=zooms, notes=tuple(notes))


def _true_aspect(image: Image.Image, plane: str, zooms: tuple) -> Image.Image:
    """A NIfTI slice stretched so that a millimetre is as long across as down (thick slices look thick)."""
    across, down = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}[plane]
    ratio = zooms[down] / zooms[across]
    if abs(ratio - 1) < 0.01:
        return image
    height = max(1, min(round(image.height * ratio), 4096))
    return image.resize((image.width, height), Image.Resampling.BILINEAR)

