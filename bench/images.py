"""How fast the scan viewer moves, and what a series holds in memory (issue 26).

    python bench/images.py                      # a 200-slice 512x512 CT series and a NIfTI volume of the same voxels
    python bench/images.py --slices 50 --repeat 20

Loads a synthetic CT series (tests/hostile.py's write_series: pydicom's CT_small scaled to 512x512, 200 slices,
zipped) and the same voxels as a NIfTI volume, then moves the slider and switches windows as a reader does. Prints,
measured side by side in one run: the per-slice render (modality LUT, window, 8-bit RGB picture) against pydicom's
own apply_voi_lut on the same slice (target: render <= 30 ms at 512x512, ratio <= 1.5), and the memory a Scan holds
against its raw voxels (target <= 1.5x).
"""
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402

from medvlm import cli  # noqa: E402
from medvlm.volumes import CT_PRESETS, open_scan  # noqa: E402


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def parse_args(argv=None):
    parser = cli.Parser("python bench/images.py", __doc__)
    parser.add_argument("--slices", type=int, default=200, help="slices in the synthetic series")
    parser.add_argument("--repeat", type=int, default=10, help="times each slice-and-window step is timed (median)")
    args = parser.parse_args(argv)
    parser.check({"--slices": not 2 <= args.slices <= 2000, "--repeat": not 1 <= args.repeat <= 1000})
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    from hostile import write_nifti, write_series, zip_files
    from pydicom.dataset import Dataset
    from pydicom.pixels.processing import apply_voi_lut

    folder = Path(tempfile.mkdtemp(prefix="medvlm-bench-images-"))
    start = time.perf_counter()
    archive = zip_files(folder / "ct.zip", write_series(folder / "ct", args.slices, size=512))
    print(f"wrote {args.slices} slices of 512x512 and zipped them ({archive.stat().st_size / 2**20:.0f} MB) in {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    scan = open_scan([archive])
    load_s = time.perf_counter() - start
    raw = scan.voxels.size * 2  # 16-bit stored values
    print(f"DICOM series: loaded in {load_s:.2f} s ({1000 * load_s / args.slices:.1f} ms per slice); "
          f"held {scan.nbytes / 2**20:.1f} MB for {raw / 2**20:.1f} MB of raw voxels: {scan.nbytes / raw:.2f}x (target <= 1.5)")

    # pydicom's own VOI on a slice, as a viewer built on it alone would do it: the window in a dataset, then 8 bits
    view = Dataset()
    view.PhotometricInterpretation, view.BitsStored, view.PixelRepresentation = "MONOCHROME2", 8, 0
    rows = []
    for window in (CT_PRESETS[1], CT_PRESETS[3], scan.default_window):
        view.WindowCenter, view.WindowWidth, view.VOILUTFunction = window.level, window.width, window.function
        slices = iter(range(0, 10**9, 7))  # a new slice each step, as a reader scrolls

        def ours(window=window, slices=slices):
            scan.render(next(slices) % args.slices, window)

        def theirs(slices=slices):
            k = next(slices) % args.slices
            apply_voi_lut(scan.voxels[k] * scan.slope[k] + scan.intercept[k], view)

        pydicom_ms = median_ms(theirs, args.repeat * 5)
        render_ms = median_ms(ours, args.repeat * 5)
        rows.append((window.label(), render_ms, pydicom_ms))
    for label, render_ms, pydicom_ms in rows:
        print(f"  slice in {label:<28}: render {render_ms:5.1f} ms (target <= 30), pydicom apply_voi_lut {pydicom_ms:5.1f} ms: "
              f"ratio {render_ms / pydicom_ms:.2f} (target <= 1.5)")

    volume = np.ascontiguousarray(np.transpose(scan.voxels, (2, 1, 0)))  # (x, y, z)
    path = write_nifti(folder / "ct.nii.gz", volume, np.diag([0.7, 0.7, 2.5, 1.0]))
    start = time.perf_counter()
    nifti = open_scan([path])
    load_s = time.perf_counter() - start
    print(f"NIfTI volume {'x'.join(map(str, volume.shape))}: loaded in {load_s:.2f} s; held {nifti.nbytes / 2**20:.1f} MB "
          f"for {volume.nbytes / 2**20:.1f} MB of raw voxels: {nifti.nbytes / volume.nbytes:.2f}x")
    for plane in nifti.planes:
        slices = iter(range(0, 10**9, 7))

        def step(plane=plane, count=nifti.slice_count(plane), slices=slices):
            nifti.render(next(slices) % count, nifti.window("lung"), plane)

        print(f"  {plane:<8} slice in the lung window: {median_ms(step, args.repeat * 5):5.1f} ms")


if __name__ == "__main__":
    main()
