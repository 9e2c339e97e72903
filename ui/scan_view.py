"""The scan viewer of the Chat and Compare tabs: a window (the header's, a CT preset, or a width and level typed in),
a slice slider, and the plane of a NIfTI volume. What it shows is exactly the picture the model and the detector are
given; the status line says which ("slice 42/120, window lung 1500/−600").

A tab keeps a `View` in a gr.State (the scan stays on the server: nothing but the rendered picture goes to the
browser) and calls `moved` when a control changes, then `shown` for the controls' and the preview's updates.
"""
from dataclasses import dataclass, replace
from functools import cached_property

import gradio as gr
from PIL import Image

from medvlm.errors import UserFacingError
from medvlm.images import blank_warning
from medvlm.volumes import Scan, Window, open_scan
from ui.events import bind
from ui.pictures import picture_file
from ui.text import markdown_text, warning

CUSTOM = "custom"  # the window dropdown's entry for a width and level typed in


@dataclass(frozen=True)
class View:
    """One upload's scan (source: the uploaded paths) on one slice in one window."""

    scan: Scan
    source: tuple
    index: int
    plane: str
    window: Window | None

    @cached_property
    def picture(self) -> Image.Image:
        return self.scan.render(self.index, self.window, self.plane)

    @property
    def where(self) -> str:
        return self.scan.where(self.index, self.window, self.plane)

    @property
    def name(self) -> str:
        return self.scan.name

    def line(self) -> str:
        """"Loaded NAME (W×H), slice 3/12, window lung 1500/−600.", with the scan's notes and a blank-image warning
        before it; Markdown-safe."""
        picture = self.picture
        where = f", {self.where}" if self.where else ""
        notes = [markdown_text(n) for n in self.scan.notes]
        blank = blank_warning(picture, self.name)
        if blank:
            notes.insert(0, warning(blank))
        return " ".join([*notes, f"Loaded {markdown_text(self.name)} ({picture.width}×{picture.height}){markdown_text(where)}."])


def sources(paths) -> tuple:
    """An upload's value (one path, a list of paths, or nothing) as a tuple of paths."""
    if paths is None:
        return ()
    if isinstance(paths, str):
        return (paths,)
    if isinstance(paths, (list, tuple)) and all(isinstance(p, str) for p in paths):
        return tuple(paths)
    raise UserFacingError("An upload is a file, or a list of files of one DICOM series.")


def open_view(paths) -> View:
    """The upload at its middle slice in its own window. Raises UserFacingError for anything that is no scan."""
    source = sources(paths)
    if not source:
        raise UserFacingError("Upload an image first.")
    scan = open_scan(list(source))
    plane = scan.planes[0]
    return View(scan, source, scan.middle(plane), plane, scan.default_window)


def view_of(view: View | None, paths) -> View:
    """The session's view when it is of this upload (the slice and window on screen), else the upload opened anew
    (an API call that sends a file straight to /compare)."""
    if isinstance(view, View) and view.source == sources(paths):
        return view
    return open_view(paths)


def script_number(value) -> float:
    """A control's number as the page or a script sends it (5, 5.0, "5"); true and false are none (bool is an int in
    Python, so float(True) would be a width or a slice of 1)."""
    if isinstance(value, bool):
        raise ValueError(value)
    return float(value)


def moved(view: View | None, control: str, window_name=None, width=None, level=None, number=None, plane=None) -> View:
    """The view after one control changed: control is "window", "custom" (width and level typed in), "slice" or
    "plane". Values come from the browser or the API: anything else is refused in one line."""
    if not isinstance(view, View):
        raise UserFacingError("Upload a scan first.")
    scan = view.scan
    if control == "window":
        if scan.colour or not scan.windows:
            raise UserFacingError("A colour picture has no windows.")
        if window_name == CUSTOM:
            return view
        if not isinstance(window_name, str) or window_name not in {w.name for w in scan.windows}:
            raise UserFacingError(f"No window {str(window_name)[:40]!r} for this scan.")
        return replace(view, window=scan.window(window_name))
    if control == "custom":
        if scan.colour or not scan.windows:
            raise UserFacingError("A colour picture has no windows.")
        try:
            width, level = script_number(width), script_number(level)
        except (TypeError, ValueError):
            raise UserFacingError("A window is a width and a level, both numbers.") from None
        if not (1 <= width <= 1e7 and abs(level) <= 1e7):
            raise UserFacingError("A window's width is 1 to 10,000,000 and its level within ±10,000,000.")
        return replace(view, window=Window(CUSTOM, width, level))
    if control == "slice":
        try:
            number = script_number(number)
            index = int(number) - 1
            if number != index + 1:  # 5.5 from a script is not slice 5
                raise ValueError(number)
        except (TypeError, ValueError, OverflowError):
            raise UserFacingError("A slice is a whole number.") from None
        if not 0 <= index < scan.slice_count(view.plane):
            raise UserFacingError(f"Slice {index + 1} is outside 1–{scan.slice_count(view.plane)}.")
        return replace(view, index=index)
    if control == "plane":
        if plane not in scan.planes:
            raise UserFacingError(f"This scan has no {str(plane)[:20]!r} plane; it has {', '.join(scan.planes)}.")
        return replace(view, plane=plane, index=scan.middle(plane))
    raise UserFacingError(f"Unknown control {control!r}.")


def shown(view: View | None, moved_by: str = "") -> dict:
    """The preview and the controls for a view (None: no scan; the controls hide). A PNG or JPEG has no window and
    one slice: only the preview shows. The control a person just moved (moved_by) is left alone: set back to the
    value it had when the event began, a slider would jump back under a finger still scrolling."""
    if view is None:
        return {"view": None, "preview": None, "viewer": gr.update(visible=False)}
    scan, window = view.scan, view.window
    names = [w.name for w in scan.windows]
    count = scan.slice_count(view.plane)
    out = {
        "view": view, "preview": picture_file(view.picture),
        "viewer": gr.update(visible=bool(scan.windows) or count > 1),
        "window": gr.update(choices=names + [CUSTOM], value=window.name if window else None, visible=bool(scan.windows)),
        "width": gr.update(value=round(window.width, 2) if window else None, visible=bool(scan.windows)),
        "level": gr.update(value=round(window.level, 2) if window else None, visible=bool(scan.windows)),
        "slice": gr.update(minimum=1, maximum=max(count, 2), value=view.index + 1, visible=count > 1, interactive=count > 1),
        "plane": gr.update(choices=list(scan.planes), value=view.plane, visible=len(scan.planes) > 1),
    }
    return {name: update for name, update in out.items() if name != moved_by}


VIEW_OUTPUTS = ("view", "preview", "viewer", "window", "width", "level", "slice", "plane")


def build_controls(prefix: str = "") -> dict:
    """The viewer's controls (hidden until a scan with windows or slices is uploaded), as {name: component};
    elem_ids are prefixed (the Compare tab's are "compare-window"...)."""
    with gr.Group(visible=False) as viewer:
        window = gr.Dropdown([], label="Window", elem_id=f"{prefix}window")
        with gr.Row():
            # No minimum or maximum here: Gradio would refuse an out-of-range number with a bare "Error" over every
            # output; `moved` says what a window may be, in the status line.
            width = gr.Number(label="Width", elem_id=f"{prefix}window-width")
            level = gr.Number(label="Level", elem_id=f"{prefix}window-level")
        plane = gr.Radio([], label="Plane", visible=False, elem_id=f"{prefix}plane")
        number = gr.Slider(1, 2, value=1, step=1, label="Slice", visible=False, elem_id=f"{prefix}slice")
    return {"viewer": viewer, "window": window, "width": width, "level": level, "slice": number, "plane": plane}


# Which controls each change reads, and the handlers' parameter for each control.
CONTROL_INPUTS = {"window": ("window",), "custom": ("width", "level"), "slice": ("slice",), "plane": ("plane",)}
PARAMETERS = {"window": "window", "width": "width", "level": "level", "slice": "slice_number", "plane": "plane"}


def listen(handler, outputs: dict, controls: dict, view_state, *more_state, api_prefix: str = "") -> None:
    """Wire each control to `handler(control, view, *more_state, window, width, level, slice_number, plane)`, given
    only that control's values (the others None), its updates keyed by `outputs`. Only a person's change (input,
    submit) moves the view, never an update the handler itself sent. Each control is also an API endpoint taking
    just its values (/{api_prefix}window, /{api_prefix}window_custom, /{api_prefix}slice, /{api_prefix}plane), so a
    script shows the model the slice and window it chose, as a person would."""
    # preprocess=False: `moved` checks a script's values itself and says what is wrong in one line (Gradio's own
    # check of a slider or a choice list would answer a bare error, or none for a word where a number goes).
    quiet = {"show_progress": "hidden", "trigger_mode": "always_last", "preprocess": False}

    def wire(control: str, event, **api):
        own = CONTROL_INPUTS[control]
        unused = {PARAMETERS[name]: None for name in PARAMETERS if name not in own}
        bind(handler, outputs, control=control, **unused).on(
            event, [view_state, *more_state, *(controls[name] for name in own)], **api, **quiet)

    wire("window", controls["window"].input, api_name=f"{api_prefix}window")
    wire("custom", controls["width"].submit, api_name=f"{api_prefix}window_custom")
    wire("custom", controls["level"].submit, api_visibility="private")
    wire("slice", controls["slice"].input, api_name=f"{api_prefix}slice")  # dragging or the arrow keys
    wire("plane", controls["plane"].input, api_name=f"{api_prefix}plane")
