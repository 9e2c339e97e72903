"""Image decoding: every supported kind becomes 8-bit RGB; every bad file gets one clear line."""
import logging

import numpy as np
import pytest
from PIL import Image

from medvlm.errors import UserFacingError
from medvlm.images import blank_warning, load_image

PATIENT = "Doe^Jane"
PATIENT_ID = "MRN-0042-SECRET"


def write_dicom(path, pixels: np.ndarray, **tags):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = PATIENT, PATIENT_ID, "19700101"
    ds.Modality = "CT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_real_jpeg_from_vqa_rad(vqa_rad_image):
    image = load_image(vqa_rad_image)
    assert image.mode == "RGB" and image.size == Image.open(vqa_rad_image).size
    assert np.asarray(image).std() > 10  # real content, not a blank


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "P", "I;16", "1", "CMYK"])
def test_every_pil_mode_becomes_rgb8(tmp_path, mode):
    gradient = np.tile(np.linspace(0, 1, 64), (48, 1))
    if mode == "I;16":
        image = Image.fromarray((gradient * 60000).astype(np.uint16))
    else:
        image = Image.fromarray((gradient * 255).astype(np.uint8)).convert(mode)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    image.save(path)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (64, 48)
    pixels = np.asarray(out)
    if mode not in ("1",):
        assert pixels[:, 0].mean() < pixels[:, -1].mean()  # the gradient survives the conversion


def test_sixteen_bit_uses_full_range(tmp_path):
    data = np.linspace(1000, 1400, 100 * 100).reshape(100, 100).astype(np.uint16)  # a narrow 16-bit range
    Image.fromarray(data).save(tmp_path / "ct16.png")
    pixels = np.asarray(load_image(tmp_path / "ct16.png"))
    assert pixels.min() == 0 and pixels.max() == 255


def test_transparent_png_composited_on_black(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    assert np.asarray(load_image(tmp_path / "t.png")).max() == 0


def test_exif_metadata_is_dropped(tmp_path):
    image = Image.new("RGB", (20, 20), "white")
    exif = Image.Exif()
    exif[0x013B] = PATIENT  # Artist tag
    image.save(tmp_path / "e.jpg", exif=exif)
    out = load_image(tmp_path / "e.jpg")
    assert not out.info and PATIENT not in str(out.getexif())


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "empty (0 bytes)"),
        (b"hello, this is not an image", "not a PNG, JPEG or DICOM image"),
    ],
    ids=["zero-byte", "text-file"],
)
def test_bad_files_give_one_line(tmp_path, content, expected):
    path = tmp_path / "upload.png"
    path.write_bytes(content)
    with pytest.raises(UserFacingError) as error:
        load_image(path)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_corrupt_png_data(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(tmp_path / "c.png")
    data = bytearray((tmp_path / "c.png").read_bytes())
    data[200:260] = b"\xff" * 60  # inside the compressed IDAT stream
    (tmp_path / "c.png").write_bytes(bytes(data))
    with pytest.raises(UserFacingError, match="could not be decoded"):
        load_image(tmp_path / "c.png")


def test_truncated_jpeg(tmp_path, vqa_rad_image):
    data = vqa_rad_image.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserFacingError, match="truncated or corrupt"):
        load_image(tmp_path / "cut.jpg")


def test_wrong_format_is_named(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "scan.gif")
    with pytest.raises(UserFacingError, match="is a GIF image; upload a PNG, JPEG or DICOM"):
        load_image(tmp_path / "scan.gif")


def test_decompression_bomb_refused_before_decoding(tmp_path):
    # 10000 x 6000 = 60 MP of a single colour compresses to a few kB: a bomb by pixel count, not by file size.
    Image.new("L", (10000, 6000)).save(tmp_path / "bomb.png", optimize=True)
    assert (tmp_path / "bomb.png").stat().st_size < 1_000_000
    with pytest.raises(UserFacingError, match="60 MP; the limit is 50 MP"):
        load_image(tmp_path / "bomb.png")


def test_missing_file(tmp_path):
    with pytest.raises(UserFacingError, match="missing or unreadable"):
        load_image(tmp_path / "nope.png")


def test_dicom_windowed_to_8bit_without_identifying_tags(tmp_path, caplog):
    hu = np.linspace(-1000, 1000, 64 * 64).reshape(64, 64).astype(np.int16)
    path = write_dicom(tmp_path / "ct.dcm", hu, WindowCenter=0, WindowWidth=400, RescaleSlope=1, RescaleIntercept=0)
    with caplog.at_level(logging.DEBUG):
        image = load_image(path)
    pixels = np.asarray(image)[..., 0]
    assert image.mode == "RGB" and image.size == (64, 64)
    assert pixels[0, 0] == 0 and pixels[-1, -1] == 255  # -1000 HU below the window, +1000 above it
    assert 0 < pixels[32, 32] < 255  # ~0 HU inside the window
    assert (pixels == 0).mean() > 0.3  # the window clips: min-max would not
    assert not image.info
    assert PATIENT not in caplog.text and PATIENT_ID not in caplog.text


def test_dicom_without_window_uses_min_max_and_monochrome1_is_inverted(tmp_path):
    raw = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
    path = write_dicom(tmp_path / "x.dcm", raw, PhotometricInterpretation="MONOCHROME1")
    pixels = np.asarray(load_image(path))[..., 0]
    assert pixels[0, 0] == 255 and pixels[-1, -1] == 0


def test_dicom_detected_by_preamble_whatever_the_name(tmp_path):
    path = write_dicom(tmp_path / "export.bin", np.zeros((16, 16), np.uint16))
    assert load_image(path).size == (16, 16)


@pytest.mark.parametrize("damage", ["truncated-pixels", "no-pixels", "garbage"])
def test_malformed_dicom(tmp_path, damage):
    path = write_dicom(tmp_path / "bad.dcm", np.zeros((64, 64), np.uint16))
    if damage == "truncated-pixels":
        path.write_bytes(path.read_bytes()[:-2000])
        expected = "could not be decoded|malformed|not a readable DICOM|declares .* but the file holds"
    elif damage == "no-pixels":
        import pydicom

        ds = pydicom.dcmread(path)
        del ds.PixelData
        ds.save_as(path)
        expected = "without image pixel data"
    else:
        path.write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 50)
        expected = "not a readable DICOM|without image pixel data|malformed"
    with pytest.raises(UserFacingError, match=expected) as error:
        load_image(path)
    assert PATIENT not in str(error.value) and PATIENT_ID not in str(error.value)


@pytest.mark.parametrize("value", [0, 128, 255])
def test_a_blank_image_is_named_as_one(tmp_path, value, vqa_rad_image):
    Image.new("L", (256, 256), value).save(tmp_path / "grey.png")
    assert "grey.png is one value everywhere" in blank_warning(load_image(tmp_path / "grey.png"), "grey.png")
    nearly = Image.new("L", (256, 256), value)
    nearly.putpixel((3, 3), (value + 1) % 256)  # two different pixels: not blank
    nearly.save(tmp_path / "nearly.png")
    assert blank_warning(load_image(tmp_path / "nearly.png"), "nearly.png") is None
    assert blank_warning(load_image(vqa_rad_image), "scan.jpg") is None
