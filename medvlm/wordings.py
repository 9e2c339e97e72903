"""How each label fact is asked: the training wordings and the held-out evaluation wordings, kept apart.

A model right in one wording is not right: every label fact (tumour presence, type, side, height, size, modality,
body region, skin diagnosis) has many training wordings and a separate set of held-out wordings that no training
question uses, after `normalize` (case, British/American spelling, articles and punctuation ignored). Training
wordings are built as frames x nouns x image words (hundreds per fact), then every one that normalises to a held-out
wording is dropped, so the two sets are disjoint by construction (tests/test_grounding.py checks it).

Reversed polarity: a wording with reversed=True asks the opposite of the fact ("Is this brain normal?" asks "is
there a tumour?" the other way round), so its answer flips. Adversarial questions in the ProbMed manner (arXiv
2405.20421) ask an attribute the image does not have: the wrong tumour type, the wrong side, the wrong modality;
their answer is "no", and each is paired with the true attribute so that "no" alone scores 50 balanced.
"""
import itertools
import re
from dataclasses import dataclass

TRAIN, HELDOUT = "train", "heldout"


@dataclass(frozen=True)
class Wording:
    text: str  # may hold {name}: the attribute asked about (a tumour type, a side, a body region...)
    reversed: bool = False  # yes means the fact is absent ("Is this brain normal?")


SPELLING = {"tumour": "tumor", "tumours": "tumors", "centre": "center", "grey": "gray", "haemorrhage": "hemorrhage",
            "oedema": "edema", "anatomical": "anatomic", "localised": "localized"}
_NOT_WORD = re.compile(r"[^a-z0-9]+")


def normalize(text: str) -> str:
    """The form under which two wordings count as the same: lower case, no punctuation, American spelling, no
    articles ("Is there a tumour?" == "is there tumor")."""
    words = _NOT_WORD.sub(" ", text.lower().replace("-", " ")).split()
    return " ".join(SPELLING.get(w, w) for w in words if w not in ("a", "an", "the"))


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" or noun.startswith(("MR", "X-")) else "a"


def _expand(frames, nouns=(("tumor", "tumors"),), images=("image",)) -> list[str]:
    """Frames with {a} {n} (article + noun), {ns} (plural) and {img} filled in every combination, deduplicated."""
    out = {}
    for frame, (noun, plural), image in itertools.product(frames, nouns, images):
        if "brain {img}" in frame and image.startswith("brain "):
            continue  # the frame names the brain itself: "a normal brain {img}" takes "MRI", not "brain MRI"
        text = frame.replace("{a} {n}", f"{_article(noun)} {noun}").replace("{n}", noun).replace("{ns}", plural)
        text = text.replace("{img}", image)
        out.setdefault(normalize(text), text[0].upper() + text[1:])
    return list(out.values())


# --- tumour presence (brain MRI) -------------------------------------------------------------------------------------

FINDING_NOUNS = (("tumor", "tumors"), ("tumour", "tumours"), ("brain tumor", "brain tumors"), ("brain tumour", "brain tumours"),
                 ("mass", "masses"), ("lesion", "lesions"), ("growth", "growths"), ("neoplasm", "neoplasms"),
                 ("abnormality", "abnormalities"), ("brain mass", "brain masses"), ("brain lesion", "brain lesions"),
                 ("intracranial mass", "intracranial masses"), ("cancer", "cancers"), ("space-occupying lesion", "space-occupying lesions"))
IMAGE_WORDS = ("image", "scan", "MRI", "brain MRI", "picture", "slice", "MR image", "brain scan", "study")

PRESENCE_TRAIN_FRAMES = (
    "Is there {a} {n} in this {img}?", "Is there any {n} in the {img}?", "Does this {img} show {a} {n}?",
    "Does the {img} contain {a} {n}?", "Is {a} {n} visible in this {img}?", "Is {a} {n} visible?",
    "Is {a} {n} present in this {img}?", "Is there {a} {n}?", "Do you see {a} {n}?", "Can {a} {n} be seen in this {img}?",
    "Is there evidence of {a} {n}?", "Is there any evidence of {a} {n} in this {img}?", "Does this patient have {a} {n}?",
    "Are there signs of {a} {n}?", "Any {n} in this {img}?", "Any {n}?", "Tell me whether there is {a} {n}.",
    "Check the {img} for {a} {n}: is there one?", "Is {a} {n} seen?", "Does the {img} reveal {a} {n}?",
    "Is {a} {n} identified on this {img}?", "Do you notice {a} {n} in the {img}?", "Is there {a} {n} in the brain?",
    "Does this {img} demonstrate {a} {n}?", "Is the {img} showing {a} {n}?", "Would you say there is {a} {n}?",
    "Is {a} {n} depicted?", "Can you find {a} {n}?", "Look for {a} {n}. Is there one?", "Is {a} {n} there?",
    "Does the brain have {a} {n}?", "Do you spot {a} {n} on the {img}?", "Is there {a} {n} on this {img}?",
    "Report whether {a} {n} is present.", "Is {a} {n} apparent?", "Has this {img} got {a} {n}?",
    "Does the brain contain {a} {n}?", "Are any {ns} present?", "Are there {ns} in this {img}?", "Do you see any {ns}?",
)
# Plain questions about the image's state, the mirror of most reversed frames ("Is the scan normal?"): without them a
# state adjective predicted a reversed question, and the shipped adapter answered "Does this MRI look abnormal to
# you?" as if it were "...healthy?" (12.8 balanced, bench/fresh_wordings.py). {n} is the adjective here.
PRESENCE_STATE_TRAIN_FRAMES = (
    "Is the {img} {n}?", "Does the brain look {n}?", "Is this brain {n}?", "Is the brain {n}?",
    "Does this {img} look {n}?", "Is it {a} {n} {img}?", "Would you call this {img} {n}?", "Does the brain appear {n}?",
    "Is anything {n} in this {img}?", "Does this {img} show {a} {n} brain?",
)
STATE_ADJECTIVES = (("abnormal", "abnormal"), ("unhealthy", "unhealthy"), ("pathological", "pathological"), ("diseased", "diseased"))
# The same frames with the opposite state (reversed), all but "Is anything {n} ...?" ("Is anything normal?" does not
# ask whether all is). With the plain state frames drawn like any other wording (296 questions against 1,122 reversed
# "normal"/"healthy" ones), runs/tiny-balanced still answered "Is this MRI abnormal?" as "...normal?" (3.3 balanced
# on 30 val slices): the frame, not the adjective, chose the polarity. So each slice is also asked minimal pairs
# (STATE_PAIRS): one frame and image word, once with each state, the answers opposite.
HEALTHY_ADJECTIVES = (("normal", "normal"), ("healthy", "healthy"), ("unremarkable", "unremarkable"))
ONE_SIDED_STATE_FRAMES = ("Is anything {n} in this {img}?",)
PRESENCE_PAIRED_STATE_FRAMES = tuple(f for f in PRESENCE_STATE_TRAIN_FRAMES if f not in ONE_SIDED_STATE_FRAMES)
PRESENCE_REVERSED_TRAIN_FRAMES = (
    "Is the {img} normal?", "Does the brain look normal?", "Is this a normal brain {img}?", "Is the brain healthy?",
    "Is this {img} healthy?", "Is the {img} free of {ns}?", "Is the brain free of {ns}?", "Is this {img} unremarkable?",
    "Is the {img} within normal limits?", "Does this {img} show a healthy brain?", "Is the brain {img} clear?",
    "Is this {img} without {a} {n}?", "Is the brain tumor-free?", "Is this a healthy brain?", "Would you call this {img} normal?",
    "Is everything normal in this {img}?", "Does this {img} look normal?", "Is the brain normal?", "Is it a normal {img}?",
    "Is this {img} negative for {ns}?", "Is this brain free of disease?", "Does the brain appear healthy?",
)
# Held out: never trained on. The first is the label questions' former fixed wording (and the Compare tab's); the
# next four are the wordings a new user tried (issue 22); the rest vary verb, noun, form and polarity.
PRESENCE_HELDOUT = (
    Wording("Is there a tumor in this brain MRI?"), Wording("Can you see a tumour?"), Wording("Is any mass present?"),
    Wording("Is there an abnormality in this image?"), Wording("Do you detect a neoplasm on this scan?"),
    Wording("Any sign of a brain tumour?"), Wording("State whether this image shows a brain tumor."),
    Wording("Is this brain normal?", reversed=True), Wording("Does this MRI look healthy?", reversed=True),
    Wording("Is the scan free of tumours?", reversed=True),
)

# --- tumour type, side, height, size, modality -----------------------------------------------------------------------

TYPE_OPTIONS = ("pituitary, meningioma or glioma", "glioma, meningioma or pituitary tumor", "meningioma, glioma or pituitary tumour")
TYPE_TRAIN_FRAMES = (
    "What type of tumor is this?", "Which kind of brain tumor does this {img} show?", "What is the tumor type?",
    "Name the tumor type.", "What kind of tumour is seen?", "What is the most likely tumor type?",
    "Which type of brain tumour is shown?", "What tumor does this {img} show?", "Identify the tumour.",
    "Classify the tumor.", "What is this tumor?", "Which tumour is in this {img}?", "What kind of {n} is this?",
    "What type of {n} is shown in the {img}?", "Which tumor type is visible?", "What is the diagnosis of this tumor?",
)
TYPE_TRAIN_OPTION_FRAMES = ("Which tumor is this: {o}?", "What type of tumor is shown: {o}?", "Is this tumour {o}?",
                            "Classify the tumor as {o}.", "Which kind of tumour is this, {o}?")
TYPE_HELDOUT = (
    Wording("What type of tumor is this: pituitary, meningioma or glioma?"), Wording("What sort of tumour is visible here?"),
    Wording("Which of these does the scan show: glioma, meningioma or pituitary tumor?"), Wording("Tell me the tumor's type."),
)
TYPE_YES_NO_TRAIN = ("Is there a {name} in this image?", "Does this MRI show a {name}?", "Is this a {name}?",
                     "Is the tumor a {name}?", "Do you see a {name}?", "Is a {name} visible?", "Does the patient have a {name}?",
                     "Is this tumour a {name}?", "Does the scan show a {name}?", "Is there a {name}?", "Could this tumor be a {name}?",
                     "Is the lesion a {name}?", "Does this image show a {name}?", "Is a {name} seen on this MRI?")
TYPE_YES_NO_HELDOUT = (Wording("Is a {name} present?"), Wording("Does this slice show a {name}?"))

SIDE_TRAIN = ("Is the tumor in the left or the right half of the image?", "On which side of the image is the tumor, left or right?",
              "Which side of the image is the {n} on: left or right?", "Left or right: where in the image is the tumour?",
              "Is the lesion on the left or the right side of the image?", "Is the mass in the left or right half of the image?",
              "In which half of the image, left or right, is the tumor?")
SIDE_HELDOUT = (Wording("Which half of the image holds the tumour, left or right?"),)
SIDE_YES_NO_TRAIN = ("Is the tumor on the {name} side of the image?", "Is the {n} in the {name} half of the image?",
                     "Is the tumour located in the {name} half of the image?", "Does the tumor lie on the image's {name} side?")
SIDE_YES_NO_HELDOUT = (Wording("Is the lesion found in the {name} half of the picture?"),)
HEIGHT_TRAIN = ("Is the tumor in the upper or the lower half of the image?", "Is the tumor in the top or the bottom half of the image?",
                "Upper or lower: where in the image is the tumour?", "Is the {n} in the upper or lower part of the image?",
                "In which half of the image, upper or lower, is the tumor?")
HEIGHT_HELDOUT = (Wording("Does the tumour sit in the upper or the lower half of the image?"),)
HEIGHT_YES_NO_TRAIN = ("Is the tumor in the {name} half of the image?", "Is the {n} located in the {name} part of the image?",
                       "Does the tumour lie in the {name} half of the image?")
HEIGHT_YES_NO_HELDOUT = (Wording("Is the lesion found in the {name} half of the picture?"),)
SIZE_TRAIN = ("How large is the tumor: small, medium or large?", "What is the size of the tumor: small, medium or large?",
              "Is the tumour small, medium or large?", "How big is the {n}: small, medium or large?",
              "Small, medium or large: how big is the tumor?")
SIZE_HELDOUT = (Wording("Would you call the tumour small, medium or large?"),)
MODALITY_NAMES = {"MRI": "an MRI", "CT": "a CT scan", "X-ray": "an X-ray", "ultrasound": "an ultrasound image"}
MODALITY_YES_NO_TRAIN = ("Is this {name}?", "Was this image taken as {name}?", "Is this picture {name}?", "Is the scan {name}?",
                         "Does this look like {name}?", "Is this image {name}?")
MODALITY_YES_NO_HELDOUT = (Wording("Was this study acquired as {name}?"),)

# --- body region (VQA-RAD), skin diagnosis (ISIC) --------------------------------------------------------------------

ORGAN_TRAIN = ("Which part of the body does this image show: head, chest or abdomen?", "What body region is imaged here?",
               "Which region is this scan of?", "What part of the body is this?", "Which body part is shown?",
               "Is this the head, chest or abdomen?", "What anatomical region does this image cover?",
               "Which part of the body was scanned?", "Head, chest or abdomen?", "What region does this scan show?")
ORGAN_HELDOUT = (Wording("What region of the body is this?"), Wording("Which body area was imaged: head, chest or abdomen?"))
ORGAN_YES_NO_TRAIN = ("Does this image show the {name}?", "Is this an image of the {name}?", "Is the {name} shown?",
                      "Was the {name} imaged?", "Is this a scan of the {name}?", "Is this the {name}?",
                      "Does the scan cover the {name}?", "Is the {name} imaged here?")
ORGAN_YES_NO_HELDOUT = (Wording("Is this picture of the {name}?"), Wording("Was this scan taken of the {name}?"))
DIAGNOSIS_TRAIN = ("What is the most likely diagnosis for this skin lesion?", "What does this dermoscopic image show?",
                   "What is this skin lesion?", "Name the diagnosis of this lesion.", "What is the diagnosis?",
                   "Which skin condition does this dermoscopy show?")
DIAGNOSIS_HELDOUT = (Wording("What lesion is seen in this dermoscopy image?"), Wording("Diagnose this skin lesion."))
DIAGNOSIS_YES_NO_TRAIN = ("Is this lesion {name}?", "Does this dermoscopic image show {name}?", "Is this {name}?",
                          "Is the lesion {name}?", "Does the skin show {name}?")
DIAGNOSIS_YES_NO_HELDOUT = (Wording("Is the diagnosis {name}?"), Wording("Does this dermoscopy show {name}?"))


def _split(train_texts, heldout: tuple[Wording, ...], reversed_texts=()) -> dict[str, tuple[Wording, ...]]:
    taken = {normalize(w.text) for w in heldout}
    train = [Wording(t) for t in train_texts if normalize(t) not in taken]
    train += [Wording(t, reversed=True) for t in reversed_texts if normalize(t) not in taken]
    return {TRAIN: tuple(train), HELDOUT: heldout}


_TYPE_TRAIN = _expand(TYPE_TRAIN_FRAMES, FINDING_NOUNS[:2] + FINDING_NOUNS[4:6], IMAGE_WORDS[:4]) + [
    frame.replace("{o}", options) for frame in TYPE_TRAIN_OPTION_FRAMES for options in TYPE_OPTIONS]
_LOCATION_NOUNS = (("tumor", "tumors"), ("tumour", "tumours"), ("mass", "masses"), ("lesion", "lesions"))

# fact -> {TRAIN: wordings, HELDOUT: wordings}. The fact names are medvlm.labels' task names.
WORDINGS: dict[str, dict[str, tuple[Wording, ...]]] = {
    "tumor_presence": _split(_expand(PRESENCE_TRAIN_FRAMES, FINDING_NOUNS, IMAGE_WORDS)
                             + _expand(PRESENCE_STATE_TRAIN_FRAMES, STATE_ADJECTIVES, IMAGE_WORDS), PRESENCE_HELDOUT,
                             _expand(PRESENCE_REVERSED_TRAIN_FRAMES, FINDING_NOUNS[:6] + FINDING_NOUNS[8:9], IMAGE_WORDS)
                             + _expand(PRESENCE_PAIRED_STATE_FRAMES, HEALTHY_ADJECTIVES, IMAGE_WORDS)),
    "tumor_type": _split(_TYPE_TRAIN, TYPE_HELDOUT),
    "tumor_type_yes_no": _split(TYPE_YES_NO_TRAIN, TYPE_YES_NO_HELDOUT),
    "tumor_side": _split(_expand(SIDE_TRAIN, _LOCATION_NOUNS), SIDE_HELDOUT),
    "tumor_side_yes_no": _split(_expand(SIDE_YES_NO_TRAIN, _LOCATION_NOUNS), SIDE_YES_NO_HELDOUT),
    "tumor_height": _split(_expand(HEIGHT_TRAIN, _LOCATION_NOUNS), HEIGHT_HELDOUT),
    "tumor_height_yes_no": _split(_expand(HEIGHT_YES_NO_TRAIN, _LOCATION_NOUNS), HEIGHT_YES_NO_HELDOUT),
    "tumor_size": _split(_expand(SIZE_TRAIN, _LOCATION_NOUNS), SIZE_HELDOUT),
    "modality_yes_no": _split(MODALITY_YES_NO_TRAIN, MODALITY_YES_NO_HELDOUT),
    "organ": _split(ORGAN_TRAIN, ORGAN_HELDOUT),
    "organ_yes_no": _split(ORGAN_YES_NO_TRAIN, ORGAN_YES_NO_HELDOUT),
    "lesion_diagnosis": _split(DIAGNOSIS_TRAIN, DIAGNOSIS_HELDOUT),
    "lesion_yes_no": _split(DIAGNOSIS_YES_NO_TRAIN, DIAGNOSIS_YES_NO_HELDOUT),
}


def _state_pairs() -> tuple[tuple[Wording, Wording], ...]:
    """(plain, reversed) training wordings of one paired state frame and image word, differing only in the state
    ("Is the scan abnormal?", "Is the scan normal?"); a pair with either side held out is left out."""
    train = {normalize(w.text): w for w in WORDINGS["tumor_presence"][TRAIN]}
    pairs = {}
    for frame, image, bad, good in itertools.product(PRESENCE_PAIRED_STATE_FRAMES, IMAGE_WORDS, STATE_ADJECTIVES, HEALTHY_ADJECTIVES):
        plain, reversed_ = (train.get(normalize(text)) for state in (bad, good) for text in _expand((frame,), (state,), (image,)))
        if plain and reversed_:
            pairs.setdefault((plain.text, reversed_.text), (plain, reversed_))
    return tuple(pairs.values())


STATE_PAIRS = _state_pairs()


def wordings(fact: str, split: str, reversed: bool | None = None, naming: str | None = None) -> tuple[Wording, ...]:
    """The fact's wordings of one split (TRAIN or HELDOUT); reversed=False/True keeps one polarity; naming keeps
    those whose text holds that word (case-blind: "brain" for the questions that name a brain tumour)."""
    found = WORDINGS[fact][split]
    if reversed is not None:
        found = tuple(w for w in found if w.reversed == reversed)
    if naming is not None:
        found = tuple(w for w in found if naming in w.text.lower())
    return found


# Words people put around a question that leave it the same: hedges, politeness, emphasis. runs/tiny-name-pairs called
# 177 of 180 val tumours "no" when asked "Does the scan show any lesion at all?" (and 172 right without "at all"): a
# word no training question held turned the answer. So a fifth of the training questions carry one of these, and the
# model sees words that change nothing. None is in bench/fresh_wordings.py, whose fillers check what this teaches.
FILLER_PREFIXES = ("Quick question: ", "Please answer: ", "Based on the image, ", "Looking at this, ", "In your opinion, ",
                   "One more thing: ", "Honestly, ", "Tell me, ", "Doctor here: ", "Second opinion: ")
FILLER_SUFFIXES = (", please", " in your opinion", " as far as you can tell", " from what you can see", ", would you say",
                   " if you had to guess", " on this one", ", in short", " for the record", " in your view")


def with_filler(text: str, fraction: float) -> str:
    """text with one filler: the first half of [0, 1) a prefix (the question's first letter lowered unless it
    starts an acronym, "MRI"), the second half a suffix before the final mark."""
    if fraction < 0.5:
        prefix = FILLER_PREFIXES[int(fraction * 2 * len(FILLER_PREFIXES))]
        return prefix + (text if text[1:2].isupper() else text[:1].lower() + text[1:])
    suffix = FILLER_SUFFIXES[min(int((fraction - 0.5) * 2 * len(FILLER_SUFFIXES)), len(FILLER_SUFFIXES) - 1)]
    body = text.rstrip("?.")
    return body + suffix + text[len(body):]


def training_variant(text: str, fraction: float) -> str:
    """Questions as people type them: a tenth of the training questions in lower case, a tenth without the final
    mark, a fifth with a filler (with_filler) (fraction: a stable hash share of the question, from medvlm.labels)."""
    if fraction < 0.1:
        return text.lower()
    if fraction < 0.2:
        return text.rstrip("?.")
    if fraction < 0.4:
        return with_filler(text, (fraction - 0.2) / 0.2)
    return text
