"""VLM versus detector: the detector's findings as prompt text, whether a VLM answer reports a tumour, and the
agreement line the Compare tab shows under both."""
from medvlm.detect import Detection
from medvlm.metrics import normalize_tokens, yes_no

DEFAULT_QUESTION = "Is there a tumour in this MRI? Where?"
TUMOUR_WORDS = {"tumour", "tumor", "tumours", "tumors", "mass", "masses", "lesion", "lesions", "glioma", "meningioma",
                "pituitary", "adenoma", "neoplasm", "cancer", "carcinoma", "metastasis", "metastases"}
NEGATIONS = {"no", "not", "none", "without", "absent", "normal", "negative", "unremarkable"}


def findings_text(detections: list[Detection], size: tuple[int, int]) -> str:
    """The detections as one sentence the VLM can read (MIDEFICS' idea: a model's output as context)."""
    width, height = size
    if not detections:
        return f"A tumour detector (YOLOv8) found no tumour in this {width}x{height} image."
    found = "; ".join(
        f"{d.label} (confidence {d.confidence:.2f}) at x {d.box[0]:.0f}-{d.box[2]:.0f}, y {d.box[1]:.0f}-{d.box[3]:.0f}"
        for d in detections
    )
    return f"A tumour detector (YOLOv8) found, in this {width}x{height} image: {found}."


def grounded_question(question: str, detections: list[Detection], size: tuple[int, int]) -> str:
    return f"{findings_text(detections, size)}\n{question}"


def vlm_finds_tumour(answer: str) -> bool | None:
    """True/False when the answer says whether there is a tumour; None when it doesn't say.

    A lone yes or no decides; otherwise a tumour word counts unless the answer also negates ("no mass seen")."""
    verdict = yes_no(answer)
    if verdict is not None:
        return verdict == "yes"
    words = set(normalize_tokens(answer))
    if words & TUMOUR_WORDS:
        return not (words & NEGATIONS)
    if words & {"normal", "unremarkable", "negative"}:
        return False
    return None


def agreement(detections: list[Detection], answer: str) -> str:
    detector, vlm = bool(detections), vlm_finds_tumour(answer)
    if vlm is None:
        return f"The VLM's answer does not say whether there is a tumour; the detector {'finds one' if detector else 'finds none'}."
    if detector and vlm:
        return "Both find a tumour."
    if not detector and not vlm:
        return "Neither finds a tumour."
    return "Only the detector finds a tumour." if detector else "Only the VLM finds a tumour."
