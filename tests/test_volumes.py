"""Scans as radiologists read them (medvlm.volumes): windows through pydicom's VOI functions, series in position
order, zips, multi-frame files and NIfTI volumes turned to RAS, and each bad upload refused in one line."""
import numpy as np
import pydicom
import pytest
from hostile import LOADED_WITH_A_NOTE, NIFTI_KINDS, SERIES_KINDS, _nifti_variant, _series_variant, write_nifti, write_series, zip_files
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut
from test_images import write_dicom

from medvlm.errors import UserFacingError
from medvlm.images import load_image
from medvlm.volumes import CT_PRESETS, Window, apply_window, open_scan


def test_ct_presets_are_pydicom_windows_of_hounsfield_units():
    path = get_testdata_file("CT_small.dcm")
    scan = open_scan([path])
    names = [w.name for w in scan.windows]
    assert names[:len(CT_PRESETS)] == [w.name for w in CT_PRESETS] and names[-1] == "full range"
    assert scan.default_window.name == "full range"  # no window in its header: its values' range, as before
    ds = pydicom.dcmread(path)
    hounsfield = apply_modality_lut(ds.pixel_array, ds)
    lung = np.asarray(scan.render(0, scan.window("lung")))[..., 0]
    assert (lung[hounsfield <= -1350] == 0).all() and (lung[hounsfield > 150] == 255).all()
    inside = (hounsfield > -1300) & (hounsfield < 100)
    expected = ((hounsfield - (-600 - 0.5)) / (1500 - 1) + 0.5) * 255  # PS3.3 C.11.2.1.2.1
    assert np.abs(lung[inside] - expected[inside]).max() <= 1
    bone = np.asarray(scan.render(0, scan.window("bone")))[..., 0]
    assert bone.mean() < lung.mean()  # soft tissue is dark in the bone window, grey in the lung window
    assert scan.where(0, scan.window("lung")) == "window lung 1500/−600"


def test_header_windows_come_first_and_each_function_and_lut_is_pydicom_s(tmp_path):
    pixels = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 1000)
    path = write_dicom(tmp_path / "two.dcm", pixels, WindowCenter=[500, 200], WindowWidth=[400, 100], Modality="MR")
    scan = open_scan([path])
    assert [w.label() for w in scan.windows] == ["header 1 400/500", "header 2 100/200", "full range 999/500"]
    assert scan.default_window.name == "header 1"
    assert not np.array_equal(np.asarray(scan.render(0, scan.windows[0])), np.asarray(scan.render(0, scan.windows[1])))
    sigmoid = np.asarray(scan.render(0, Window("s", 400, 500, "SIGMOID")))[..., 0]
    assert sigmoid[pixels == 500].mean() == pytest.approx(127.5, abs=1)  # half way up the curve at its centre
    inverted = open_scan([write_dicom(tmp_path / "m1.dcm", pixels, PhotometricInterpretation="MONOCHROME1")])
    normal = open_scan([write_dicom(tmp_path / "m2.dcm", pixels)])
    assert np.array_equal(np.asarray(inverted.render()), 255 - np.asarray(normal.render()))

    from pydicom.dataset import Dataset

    ds = pydicom.dcmread(path)
    item = Dataset()
    item.LUTDescriptor = [1000, 0, 8]  # 8-bit entries, 1,000 of them (pydicom alone would wrap indices past 255)
    item.add_new(0x00283006, "US", [255 - k * 255 // 999 for k in range(1000)])  # a LUT that inverts
    ds.VOILUTSequence = [item]
    ds.save_as(path)
    lut = open_scan([path])
    assert lut.windows[0].lut == 0 and lut.default_window.name == "header LUT 1"
    shown = np.asarray(lut.render())[..., 0]
    assert shown[pixels == 0].min() == 255 and shown[pixels == 999].max() == 0


def test_a_series_is_ordered_along_the_slice_normal_and_a_zip_is_the_same(tmp_path):
    paths = write_series(tmp_path / "series", 12)  # shuffled on disk, InstanceNumber counting down
    scan = open_scan(paths)
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array
    assert scan.voxels.shape == (12, 128, 128) and scan.slice_count() == 12
    assert [int(scan.voxels[k, 0, 0]) - int(base[0, 0]) for k in range(12)] == [10 * k for k in range(12)]
    assert scan.nbytes <= 1.5 * scan.voxels.size * 2  # the stored int16 values, not a float copy
    zipped = open_scan([zip_files(tmp_path / "series.zip", paths, [f"dir/{p.name}" for p in paths])])
    assert np.array_equal(zipped.voxels, scan.voxels) and zipped.notes == ()
    assert zipped.where(4, zipped.window("lung")) == "slice 5/12, window lung 1500/−600"
    other = write_series(tmp_path / "other", 3, series_uid="1.2.3.4")
    mixed = open_scan(paths + other)
    assert mixed.slice_count() == 12 and "1 other series (3 files) left out" in mixed.notes[0]
    # the same series in another orientation: ordered along its own normal (sagittal: x)
    sagittal = write_series(tmp_path / "sag", 4, ImageOrientationPatient=[0, 1, 0, 0, 0, -1],
                            ImagePositionPatient={k: [3.0 * (3 - k), 0, 0] for k in range(4)})
    # normal = row x column = (-1, 0, 0): the slice at x = 9 comes first; by InstanceNumber it would come last
    assert [int(v) - int(base[0, 0]) for v in open_scan(sagittal).voxels[:, 0, 0]] == [0, 10, 20, 30]


def test_multi_frame_files_are_volumes_and_load_image_shows_the_middle_slice(tmp_path):
    pixels = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    path = write_dicom(tmp_path / "mf.dcm", pixels)
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 5
    ds.PixelData = np.stack([pixels * (k + 1) for k in range(5)]).tobytes()
    ds.save_as(path)
    scan = open_scan([path])
    assert scan.slice_count() == 5 and scan.where(2, scan.default_window) == "slice 3/5, window full range 20475/10238"
    assert np.array_equal(np.asarray(load_image(path)), np.asarray(scan.render(2)))
    colour = open_scan([get_testdata_file("SC_rgb_rle_2frame.dcm")])
    assert colour.colour and colour.slice_count() == 2 and colour.windows == () and colour.render(1).mode == "RGB"


def test_colour_dicom_in_ybr_is_drawn_in_its_own_colours_and_a_colour_series_scrolls(tmp_path):
    """pydicom's own pair: one picture stored as RGB and as JPEG YCbCr; both draw the same (converting YCbCr twice drew
    it 96 grey levels off on average). Three colour files of one series are slices of one colour scan."""
    rgb = np.asarray(open_scan([get_testdata_file("SC_rgb_dcmtk_+eb+cr.dcm")]).render(0), dtype=int)
    for ybr in ("SC_rgb_dcmtk_+eb+cy+n1.dcm", "SC_rgb_dcmtk_+eb+cy+s2.dcm"):
        assert np.abs(np.asarray(open_scan([get_testdata_file(ybr)]).render(0), dtype=int) - rgb).mean() < 5, ybr
    base = pydicom.dcmread(get_testdata_file("SC_rgb_small_odd.dcm"))  # 3×3 RGB, uncompressed
    colours = [np.random.default_rng(k).integers(0, 256, (3, 3, 3), dtype=np.uint8) for k in range(3)]
    paths = []
    for k in range(3):
        ds = base.copy()
        ds.SeriesInstanceUID, ds.InstanceNumber = "1.2.3.4", 3 - k
        ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [0, 0, 5.0 * k]
        ds.PlanarConfiguration, ds.PixelData = 0, colours[k].tobytes()  # R, G, B of each pixel in turn
        paths.append(tmp_path / f"colour{k}.dcm")
        ds.save_as(paths[-1])
    scan = open_scan([str(p) for p in reversed(paths)])
    assert scan.colour and scan.slice_count() == 3 and scan.windows == () and scan.where(2, None) == "slice 3/3"
    for k in range(3):
        assert np.array_equal(np.asarray(scan.render(k)), colours[k])  # in position order
    grey = write_dicom(tmp_path / "grey.dcm", np.zeros((3, 3), np.uint16), SeriesInstanceUID="1.2.3.4", Modality=base.Modality)
    with pytest.raises(UserFacingError, match="2 files: one series mixes colour and grey"):
        open_scan([str(paths[0]), str(grey)])


def test_nifti_is_turned_to_ras_and_shown_as_radiologists_read_it(tmp_path):
    """A volume stored left-to-right, posterior-to-anterior... in LPS order (x flipped, y flipped): a bright voxel at
    the patient's right, anterior, superior corner shows at the image's left (radiological), top (anterior/superior)."""
    volume = np.zeros((20, 30, 10), np.int16)
    # LPS storage: index 0 on x is the patient's right, index 0 on y is anterior; z upward
    volume[0, 0, 9] = 1000
    affine = np.diag([-1.0, -1.0, 2.0, 1.0])  # x and y run towards the patient's right and anterior... reversed
    scan = open_scan([write_nifti(tmp_path / "lps.nii.gz", volume, affine)])
    assert scan.planes == ("axial", "coronal", "sagittal") and scan.zooms == (1.0, 1.0, 2.0)
    assert [scan.slice_count(p) for p in scan.planes] == [10, 30, 20]
    axial = np.asarray(scan.render(9, scan.default_window, "axial"))[..., 0]
    assert axial.shape == (30, 20) and np.unravel_index(axial.argmax(), axial.shape) == (0, 0)  # anterior top, right left
    coronal = np.asarray(scan.render(29, scan.default_window, "coronal"))[..., 0]
    assert coronal.shape == (20, 20)  # 10 slices of 2 mm shown 20 mm tall
    assert np.unravel_index(coronal.argmax(), coronal.shape)[1] == 0 and coronal.argmax() // 20 <= 1  # superior, right
    assert scan.where(9, scan.window("full range"), "axial").startswith("slice 10/10 (axial), window full range")
    ct = open_scan([write_nifti(tmp_path / "ct.nii", np.linspace(-1024, 2000, 8 * 8 * 4).reshape(8, 8, 4).astype(np.int16))])
    assert ct.modality == "CT" and ct.window("lung").name == "lung"


@pytest.mark.parametrize("kind", SERIES_KINDS + NIFTI_KINDS)
def test_each_hostile_series_or_volume_gets_one_line_and_writes_nothing(kind, tmp_path, monkeypatch):
    import tempfile

    path = (_nifti_variant if kind in NIFTI_KINDS else _series_variant)(tmp_path, kind)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before = set(tmp_path.rglob("*"))
    try:
        scan = open_scan([path])
    except UserFacingError as e:
        message = str(e)
        assert "\n" not in message and len(message) < 300
        assert kind not in LOADED_WITH_A_NOTE, message
    else:
        assert kind in LOADED_WITH_A_NOTE
        assert len(scan.notes) == 1 and "\n" not in scan.notes[0]
        assert np.asarray(scan.render()).std() > 0
    assert set(tmp_path.rglob("*")) == before and not any(scratch.iterdir())
    assert not (tmp_path.parent / "escaped.dcm").exists()


def test_refusals_say_what_is_wrong(tmp_path):
    pixels = np.zeros((64, 64), np.uint16)
    lying = write_dicom(tmp_path / "lying.dcm", pixels)
    ds = pydicom.dcmread(lying)
    ds.Rows = ds.Columns = 7000
    ds.save_as(lying)
    with pytest.raises(UserFacingError, match=r"declares 7000×7000 pixels × 1 frame\(s\) at 16 bits \(93.5 MB\), but the file holds 8.0 KB"):
        open_scan([lying])
    with pytest.raises(UserFacingError, match="2,001 files in one upload; the limit is 2,000"):
        open_scan([tmp_path / f"{k}.dcm" for k in range(2001)])
    assert "lung" in {w.name for w in CT_PRESETS} and apply_window(np.array([[-2000.0, 5000.0]]), CT_PRESETS[1]).tolist() == [[0, 255]]
