"""Grounding: questions built from image labels (split safety, balance, each image's own facts), the data mixture,
scores with swapped images, the projector's standardised start, and the linear probe."""
import copy
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import torch
import yaml
from conftest import SHARED_DATA, VQA_RAD
from PIL import Image

from medvlm import grounding, labels, wordings
from medvlm.data import Example, MixturePart, load_examples, parse_mixture
from medvlm.errors import UserFacingError

BRAIN = SHARED_DATA / "brain-tumor"
ISIC = SHARED_DATA / "isic" / "isic_ham10000_sample.jsonl"
SOURCES = {"brain": f"labels:{BRAIN / 'data.yaml'}", "organ": f"labels:{VQA_RAD / 'vqa_rad.jsonl'}", "isic": f"labels:{ISIC}"}


@pytest.fixture(scope="module")
def label_records():
    return {name: labels.load_records(source, None) for name, source in SOURCES.items()}


def brain_truth(image: str) -> tuple[str, list[str]]:
    """(split, box lines) from the image's own YOLO label file."""
    path = Path(image)
    label = BRAIN / "labels" / path.parent.name / (path.stem + ".txt")
    return path.parent.name, label.read_text().split("\n") if label.is_file() and label.read_text().strip() else []


def test_brain_questions_hold_each_slice_own_facts_and_val_never_trains(label_records):
    names = yaml.safe_load((BRAIN / "data.yaml").read_text())["names"]
    for r in label_records["brain"]:
        if r["task"] == "tumor_presence_not_brain":  # the generated blanks: no slice of the set
            continue
        folder, boxes = brain_truth(r["image"])
        assert r["split"] == (labels.TRAIN if folder == "train" else labels.HELDOUT)  # a val slice never trains
        if r["task"] == "tumor_presence":
            assert r["answer"] == ("yes" if bool(boxes) != r["reversed"] else "no")  # "Is this brain normal?" flips
        elif r["task"] == "tumor_type":
            assert r["answer"] == labels.TUMOR_NAMES[names[int(boxes[0].split()[0])]]
        elif r["task"] == "tumor_side":
            assert r["answer"] == ("left" if float(boxes[0].split()[1]) < 0.5 else "right")
        elif r["task"] == "tumor_type_yes_no":
            asked = next(n for n in labels.TUMOR_NAMES.values() if n in r["question"])
            truth = labels.TUMOR_NAMES[names[int(boxes[0].split()[0])]] if boxes else None
            assert r["answer"] == ("yes" if asked == truth else "no")


def test_label_yes_no_questions_are_balanced(label_records):
    for name, records in label_records.items():
        train = [r for r in records if r["split"] == labels.TRAIN]
        for task in {r["task"] for r in train if r["task"].endswith(("yes_no", "presence"))}:  # not_brain: always "no"
            answers = Counter(r["answer"] for r in train if r["task"] == task)
            assert set(answers) == {"yes", "no"}, (name, task)
            assert 0.4 <= answers["yes"] / (answers["yes"] + answers["no"]) <= 0.6, (name, task, answers)


def test_presence_answers_are_balanced_in_each_kind_of_training_wording(label_records):
    """Tumour slices, tumour-free slices and blanks together, per kind of wording: plain naming the brain (also
    asked, "no", about other sources' images), plain not naming it, reversed. A 35 % "yes" in the second taught
    "Does the scan show any lesion at all?" -> "no"; 90 % and 14 % in the first and third (tumour-free slices asked
    7 questions each) and runs/tiny-both-forms said "tumour" of most tumour-free val slices."""
    presence = [r for r in label_records["brain"] if r["split"] == labels.TRAIN and r["task"] == "tumor_presence"]
    kinds = {"plain, naming the brain": lambda r: not r["reversed"] and "brain" in r["wording"].lower(),
             "plain, not naming it": lambda r: not r["reversed"] and "brain" not in r["wording"].lower(),
             "reversed": lambda r: r["reversed"]}
    for kind, matches in kinds.items():
        answers = Counter(r["answer"] for r in presence if matches(r))
        assert 0.4 <= answers["yes"] / answers.total() <= 0.6, (kind, answers)


def test_off_centre_training_slices_are_asked_side_and_height_both_open_and_yes_no(label_records):
    train = [r for r in label_records["brain"] if r["split"] == labels.TRAIN]
    for task in ("tumor_side", "tumor_height"):
        assert {r["image"] for r in train if r["task"] == task} == {r["image"] for r in train if r["task"] == f"{task}_yes_no"}


def test_vqa_rad_organ_questions_train_only_on_images_no_test_question_uses(label_records):
    rows = [json.loads(line) for line in (VQA_RAD / "vqa_rad.jsonl").read_text().splitlines()]
    test_images = {str((VQA_RAD / r["image"]).resolve()) for r in rows if r["split"] == "test"}
    organ = {str((VQA_RAD / r["image"]).resolve()): labels.ORGAN_NAMES[r["image_organ"]] for r in rows}
    train = [r for r in label_records["organ"] if r["split"] == labels.TRAIN]
    heldout = [r for r in label_records["organ"] if r["split"] == labels.HELDOUT]
    assert len({r["image"] for r in train}) == 111 and not {r["image"] for r in train} & test_images
    assert {r["image"] for r in heldout} == test_images
    for r in train + heldout:
        if r["task"] == "organ":
            assert r["answer"] == organ[r["image"]]
        else:
            assert r["answer"] == ("yes" if organ[r["image"]] in r["question"] else "no")


def test_isic_lesions_never_straddle_the_split(label_records):
    meta = {str((ISIC.parent / r["image"]).resolve()): r for r in map(json.loads, ISIC.read_text().splitlines())}
    split_of_lesion = {}
    for r in label_records["isic"]:
        lesion = meta[r["image"]]["lesion_id"]
        assert split_of_lesion.setdefault(lesion, r["split"]) == r["split"]
        if r["task"] == "lesion_diagnosis":
            assert r["answer"] == meta[r["image"]]["dx_name"]


def test_label_questions_are_deterministic_and_held_out_ones_ask_every_held_out_wording(label_records):
    assert labels.load_records(SOURCES["brain"], None) == label_records["brain"]
    heldout = [r for r in label_records["brain"] if r["split"] == labels.HELDOUT and r["task"] == "tumor_presence"]
    by_image = defaultdict(set)
    for r in heldout:
        by_image[r["image"]].add(r["question"])
    assert set(map(frozenset, by_image.values())) == {frozenset(w.text for w in wordings.PRESENCE_HELDOUT)}
    trained = [r for r in label_records["brain"] if r["split"] == labels.TRAIN and r["task"] == "tumor_presence"]
    assert len({r["question"] for r in trained}) > 300  # phrasing varies in training: hundreds of wordings
    assert {r["reversed"] for r in trained} == {True, False}


def test_training_and_held_out_wordings_never_meet():
    """Disjoint after normalising case, spelling variants, articles and punctuation; every fact has both sets."""
    assert wordings.normalize("Is there a TUMOUR?!") == wordings.normalize("is there tumor") == "is there tumor"
    for fact, sets in wordings.WORDINGS.items():
        train = {wordings.normalize(w.text) for w in sets[wordings.TRAIN]}
        heldout = {wordings.normalize(w.text) for w in sets[wordings.HELDOUT]}
        assert train and heldout and not train & heldout, fact
    records = [r for records in (labels.load_records(s, None) for s in SOURCES.values()) for r in records]
    asked_in_training = {wordings.normalize(r["question"].replace(r.get("name", ""), "")) for r in records if r["split"] == labels.TRAIN}
    for r in records:
        if r["split"] == labels.HELDOUT:
            assert wordings.normalize(r["question"]) not in asked_in_training, r["question"]
    # the issue's own wordings are held out, polarity included
    held = {w.text: w.reversed for w in wordings.PRESENCE_HELDOUT}
    assert held["Can you see a tumour?"] is False and held["Is any mass present?"] is False and held["Is this brain normal?"] is True


def test_a_fifth_of_training_questions_carry_a_filler_that_leaves_the_question_as_it_was(label_records):
    """Hedges and politeness around a training question ("Quick question: is there...?", "...in your view?"):
    runs/tiny-name-pairs turned its answer on an unseen "at all". The answer is the wording's, filler or not."""
    assert wordings.with_filler("Is there a tumor?", 0.0) == "Quick question: is there a tumor?"
    assert wordings.with_filler("MRI or CT?", 0.0) == "Quick question: MRI or CT?"  # an acronym keeps its case
    assert wordings.with_filler("Is there a tumor?", 0.5) == "Is there a tumor, please?"
    assert wordings.with_filler("Tell me whether there is a mass.", 0.99) == "Tell me whether there is a mass in your view."
    assert wordings.with_filler("Any mass", 0.99) == "Any mass in your view"

    def filler(question: str) -> str | None:
        return next((p for p in wordings.FILLER_PREFIXES if question.startswith(p)), None) or next(
            (f for f in wordings.FILLER_SUFFIXES if re.search(re.escape(f) + r"[?.]?$", question)), None)

    for name, records in label_records.items():
        train = [r for r in records if r["split"] == labels.TRAIN]
        used = Counter(filler(r["question"]) for r in train)
        assert 0.15 <= (len(train) - used[None]) / len(train) <= 0.25, (name, used)
        assert set(used) == {None, *wordings.FILLER_PREFIXES, *wordings.FILLER_SUFFIXES}, name  # every filler used
        assert not [r for r in records if r["split"] != labels.TRAIN and filler(r["question"])]
        for r in train:  # a filled question is its wording's, word for word, so its answer is the wording's
            said = r["question"].replace(filler(r["question"]) or "", "", 1)
            named = r["wording"].replace("{name}", r["fact"].partition(":")[2])
            assert wordings.normalize(said) == wordings.normalize(named), (r["question"], r["wording"])


def test_a_state_adjective_is_asked_in_both_polarities_and_no_wording_says_brain_twice(label_records):
    """Plain "Is the scan abnormal?" beside reversed "Is the scan normal?": with state adjectives only in reversed
    wordings, "Does this MRI look abnormal to you?" was answered as "...healthy?"."""
    plain = {r["question"].lower() for r in label_records["brain"] if r["split"] == labels.TRAIN
             and r["task"] == "tumor_presence" and not r["reversed"]}
    for adjective, _ in wordings.STATE_ADJECTIVES:
        assert sum(bool(re.search(rf"\b{adjective}\b", q)) for q in plain) >= 10, adjective  # not "abnormality"
    assert not [w.text for w in wordings.WORDINGS["tumor_presence"][wordings.TRAIN] if "brain brain" in w.text.lower()]


def test_every_training_slice_is_asked_its_state_both_ways_in_one_frame(label_records):
    """Minimal pairs ("Is the scan abnormal?" beside "Is the scan normal?", answers opposite): with plain state
    wordings drawn like any other, runs/tiny-balanced answered "Is this MRI abnormal?" as "...normal?"."""
    states = {w for adjectives in (wordings.STATE_ADJECTIVES, wordings.HEALTHY_ADJECTIVES) for w, _ in adjectives}
    for plain, reversed_ in wordings.STATE_PAIRS:
        differ = set(wordings.normalize(plain.text).split()) ^ set(wordings.normalize(reversed_.text).split())
        assert not plain.reversed and reversed_.reversed and len(differ) == 2 and differ <= states, (plain, reversed_)
    pairs = {(plain.text, reversed_.text) for plain, reversed_ in wordings.STATE_PAIRS}
    asked = defaultdict(dict)
    for r in label_records["brain"]:
        if r["split"] == labels.TRAIN and r["task"] == "tumor_presence" and "/images/train/" in r["image"]:
            asked[r["image"]][r["wording"]] = r["answer"]
    assert len(asked) >= 800
    for image, answers in asked.items():
        found = [(p, q) for p, q in pairs if p in answers and q in answers]
        assert found and all(answers[p] != answers[q] for p, q in found), image


def test_named_yes_no_facts_train_as_minimal_pairs(label_records):
    """The true name and a false one in one wording, answers opposite: drawn apart, the presence questions' lesson
    (any finding noun, one answer) took over, and runs/tiny-balanced answered VQA-RAD region yes/no at 71.4."""
    for name, task in (("organ", "organ_yes_no"), ("brain", "tumor_type_yes_no"), ("isic", "lesion_yes_no")):
        pairs = defaultdict(dict)
        for r in label_records[name]:
            if r["split"] == labels.TRAIN and r["task"] == task:
                pairs[r["image"], r["wording"]][r["question"]] = r["answer"]
        named = {image for (image, _), answers in pairs.items() if "yes" in answers.values()}  # not tumour-free slices
        assert len(named) >= 50, (name, task)
        for key, answers in pairs.items():
            if key[0] in named:
                assert len(answers) == 2 and sorted(answers.values()) == ["no", "yes"], (task, key, answers)


def test_reversed_wordings_flip_the_answer_and_other_images_get_no(label_records):
    brain = [r for r in label_records["brain"] if r["task"] == "tumor_presence"]
    by_image = defaultdict(set)
    for r in brain:
        said_tumour = (r["answer"] == "yes") != r["reversed"]
        by_image[r["image"]].add(said_tumour)
    assert all(len(claims) == 1 for claims in by_image.values())  # every wording of one image claims the same
    normal = [r for r in brain if r["question"] == "Is this brain normal?"]
    assert {r["answer"] for r in normal} == {"yes", "no"}
    for name, records in label_records.items():
        other = [r for r in records if r["task"] == "tumor_presence_not_brain"]
        assert other and {r["answer"] for r in other} == {"no"}, name
        assert all(not r["reversed"] for r in other)
    organ = {r["image"]: r["answer"] for r in label_records["organ"] if r["task"] == "organ"}
    assert all(organ[r["image"]] != "head" for r in label_records["organ"] if r["task"] == "tumor_presence_not_brain")
    blanks = {r["image"] for r in label_records["brain"] if r["task"] == "tumor_presence_not_brain"}
    assert len(blanks) == sum(labels.BLANKS.values()) and all(Path(b).is_file() for b in blanks)


def test_label_sources_load_as_examples_with_their_task():
    test = load_examples(SOURCES["brain"], "val").examples
    assert {e.split for e in test} == {labels.HELDOUT} and len({e.image_path for e in test}) == 195 + labels.BLANKS[labels.HELDOUT]
    assert Counter(e.task for e in test)["tumor_presence"] == 195 * len(wordings.PRESENCE_HELDOUT)
    assert {e.reversed for e in test if e.task == "tumor_presence"} == {True, False}
    assert all(e.fact and e.wording for e in test)


# --- scores across wordings ------------------------------------------------------------------------------------------


def test_per_wording_scores_consistency_and_the_four_kinds_on_a_hand_made_case():
    def rec(image, wording, answer, prediction, reversed=False, **more):
        return {"id": f"{image}|{wording}", "image": image, "question": wording, "wording": wording, "answer": answer,
                "answer_type": "CLOSED", "task": "tumor_presence", "fact": "tumor_presence", "reversed": reversed,
                "swapped_image": False, "prediction": prediction} | more
    records = [
        # image a (tumour): right in both wordings, and consistent once "normal? no" is read as "tumour: yes"
        rec("a", "tumour?", "yes", "yes"), rec("a", "normal?", "no", "no", reversed=True),
        # image b (tumour-free): right in "tumour?", wrong in "normal?": inconsistent
        rec("b", "tumour?", "no", "no"), rec("b", "normal?", "yes", "no", reversed=True),
        # image c (tumour): wrong in both, but consistently so
        rec("c", "tumour?", "yes", "no"), rec("c", "normal?", "no", "yes", reversed=True),
    ]
    swapped = [dict(r, swapped_image=True, prediction="yes" if r["image"] == "a" else r["prediction"]) for r in records]
    blind = [{"question": "tumour?", "prediction": "no", "no_image": True, "answer": "", "answer_type": "CLOSED", "swapped_image": False},
             {"question": "normal?", "prediction": "yes", "no_image": True, "answer": "", "answer_type": "CLOSED", "swapped_image": False}]
    scores = grounding.score(records + swapped + blind)
    task = scores["tasks"]["tumor_presence"]
    words = task["wordings"]
    assert words["per_wording"]["tumour?"]["score"] == 75.0  # balanced: yes 1/2, no 1/1
    assert words["per_wording"]["normal?"]["score"] == 25.0  # yes 0/1, no 1/2
    assert words["worst_wording"] == "normal?" and words["worst"] == 25.0 and words["mean"] == 50.0
    assert words["reversed"] == 25.0
    assert words["consistency"]["n"] == 3 and words["consistency"]["value"] == pytest.approx(66.67)
    kinds = task["kinds"]
    assert kinds["n"] == 6
    # a's two answers: consistent, and each differs from its no-image answer ("yes" vs "no", "no" vs "yes"): ideal.
    # b's "tumour? no" equals both its swapped and no-image answers: worst (inconsistent, blind); b's "normal? no"
    # differs from the no-image "yes": fragile. c: consistent, and equal to swapped and no-image: dangerous.
    assert kinds["ideal"] == pytest.approx(100 * 2 / 6, abs=0.1) and kinds["dangerous"] == pytest.approx(100 * 2 / 6, abs=0.1)
    assert kinds["fragile"] == pytest.approx(100 / 6, abs=0.1) and kinds["worst"] == pytest.approx(100 / 6, abs=0.1)
    assert scores["no_image_closed_accuracy"] == pytest.approx(33.33)  # "no" to tumour?, "yes" to normal?: right on b only


@pytest.mark.parametrize("source, message", [
    ("labels:/no/such/file.yaml", "No label file"),
    (f"labels:{VQA_RAD / 'images' / 'synpic54610.jpg'}", "first record is not valid JSON"),
])
def test_bad_label_sources_say_so(source, message):
    with pytest.raises(UserFacingError, match=message):
        load_examples(source, "train")


def test_a_yolo_set_whose_val_is_its_train_is_refused(tmp_path):
    (tmp_path / "d.yaml").write_text(f"path: {BRAIN}\ntrain: images/train\nval: images/train\nnames: {{0: a, 1: b, 2: c}}\n")
    with pytest.raises(UserFacingError, match="train and val name the same folder"):
        load_examples(f"labels:{tmp_path / 'd.yaml'}", "train")


# --- the mixture -----------------------------------------------------------------------------------------------------


def test_mixture_grammar():
    assert parse_mixture("a.jsonl, labels:b.yaml@2,c@0.5") == [
        MixturePart("a.jsonl", 1.0), MixturePart("labels:b.yaml", 2.0), MixturePart("c", 0.5)]
    for bad in ("", "a@", "a@zero", "a@-1", "a@0", "@2", "a@1e9"):
        with pytest.raises(UserFacingError):
            parse_mixture(bad)


def test_mixture_weights_repeat_rows(medvlm_tiny_base):
    from train.vlm import ImagePackedDataset

    brain = load_examples(SOURCES["brain"], "train").examples
    per_image = Counter(e.image_path for e in brain)
    first = next(path for path, n in per_image.items() if n <= 8)  # one row (tumour-free slices are asked more)
    one_image = [e for e in brain if e.image_path == first]
    others = [e for e in brain if e.image_path in [path for path in per_image if path != first][:12]]
    dataset = ImagePackedDataset(medvlm_tiny_base, [(one_image, 3.0), (others, 0.5)], short_answer=True, max_branches=8,
                                 augment=False, follow_ups=0.0)
    drawn = Counter(dataset.order)
    assert drawn[0] == 3  # the first source's single row, three times an epoch
    other_rows = len(dataset.packs) - 1
    assert other_rows >= 12 and 0 < len(dataset) - 3 < other_rows and set(drawn.values()) == {3, 1}
    again = ImagePackedDataset(medvlm_tiny_base, [(one_image, 3.0), (others, 0.5)], short_answer=True, max_branches=8,
                               augment=False, follow_ups=0.0)
    assert again.order == dataset.order  # the fraction is a fixed choice, not a random one


# --- swapped images --------------------------------------------------------------------------------------------------


def examples_about(images: list[str]) -> list[Example]:
    return [Example(image, ((f"Is this image {k}?", "yes"),), "CLOSED", task="t") for k, image in enumerate(images)] + [
        Example(images[0], (("What is it?", "a scan"),), "OPEN")]


def test_swap_gives_every_closed_question_another_image_of_the_set():
    images = [f"/img/{k}.png" for k in range(7)]
    swapped = grounding.swap_images(examples_about(images))
    assert len(swapped) == 7 and all(e.answer_type == "CLOSED" for e in swapped)
    for original, moved in zip(examples_about(images), swapped):
        assert moved.question == original.question and moved.image_path != original.image_path
    assert sorted(e.image_path for e in swapped) == images  # a derangement: each image used once
    assert grounding.swap_images(examples_about(images[:1])) == []


def test_image_reliance_is_the_drop_with_swapped_images():
    """Hand-made: a reader is right on its own images and wrong on swapped ones; a blind model says "yes" to all."""
    def records(prediction_own, prediction_swapped, task="t"):
        own = [{"prediction": prediction_own(k), "answer": "yes" if k % 2 else "no", "answer_type": "CLOSED", "task": task} for k in range(10)]
        swapped = [dict(r, prediction=prediction_swapped(k), swapped_image=True) for k, r in enumerate(own)]
        return own + swapped

    reader = grounding.score(records(lambda k: "yes" if k % 2 else "no", lambda k: "no" if k % 2 else "yes"))
    assert reader["closed_accuracy"] == 100.0 and reader["swapped_closed_accuracy"] == 0.0 and reader["image_reliance"] == 100.0
    assert reader["tasks"]["t"]["yes_no_balanced_accuracy"] == 100.0
    assert reader["closed_ci95"] == [72.2, 100.0] and reader["swapped_closed_ci95"] == [0.0, 27.8]  # 10 questions: wide
    blind = grounding.score(records(lambda k: "yes", lambda k: "yes"))
    assert blind["closed_accuracy"] == 50.0 and blind["image_reliance"] == 0.0
    assert blind["yes_no_balanced_accuracy"] == 50.0  # always "yes" is a coin, whatever the mix
    # Per task: one evaluation holding a fact the model reads and one it answers blind gives each its own drop
    mixed = grounding.score(records(lambda k: "yes" if k % 2 else "no", lambda k: "no" if k % 2 else "yes", task="read")
                            + records(lambda k: "yes", lambda k: "yes", task="guess"))
    assert mixed["image_reliance"] == 50.0
    assert mixed["tasks"]["read"]["image_reliance"] == 100.0 and mixed["tasks"]["read"]["swapped_closed_accuracy"] == 0.0
    assert mixed["tasks"]["guess"]["image_reliance"] == 0.0 and mixed["tasks"]["guess"]["swapped_closed_ci95"] == [23.7, 76.3]
    guess_line, read_line = grounding.task_lines(mixed["tasks"])
    assert "image reliance 0.0 (swapped 50.0)" in guess_line and "image reliance 100.0 (swapped 0.0)" in read_line


# --- the projector's start -------------------------------------------------------------------------------------------


def test_standardised_projector_sees_centred_features(medvlm_tiny_base, vqa_rad_image):
    from medvlm.images import load_image
    from train.vlm import standardize_projector

    model = copy.deepcopy(medvlm_tiny_base.model)
    loaded = medvlm_tiny_base
    pixels = [loaded.family.encode(loaded.processor, [("", None)], load_image(p))["pixel_values"]
              for p in sorted((VQA_RAD / "images").glob("*.jpg"))[:6]]
    before = copy.deepcopy(model.model.multi_modal_projector.linear_1)
    standardize_projector(model, pixels)
    with torch.no_grad():
        hidden = model.model.vision_tower(torch.cat(pixels)).last_hidden_state
        features = hidden.flatten(2).transpose(1, 2).reshape(-1, hidden.shape[1])
        mean, std = features.mean(0), features.std(0)
        std = std.clamp_min(std.median() * 0.1)
        torch.testing.assert_close(model.model.multi_modal_projector.linear_1(features), before((features - mean) / std),
                                   atol=1e-3, rtol=1e-3)

    # Dark pictures leave most channels at zero over them all (a zero median spread): the projector stays finite.
    black = Image.new("RGB", (224, 224))
    dark = [loaded.family.encode(loaded.processor, [("", None)], picture)["pixel_values"] for picture in (black, black)]
    model = copy.deepcopy(medvlm_tiny_base.model)
    standardize_projector(model, dark)
    assert all(torch.isfinite(p).all() for p in model.model.multi_modal_projector.parameters())


def test_the_projector_is_standardised_on_images_spread_over_the_whole_set():
    from train.vlm import evenly_spread

    assert evenly_spread(list("abcdef"), 256) == list("abcdef")  # a small set: every image, not the first one 6 times
    assert evenly_spread(list(range(1000)), 4) == [0, 250, 500, 750]


# --- the linear probe ------------------------------------------------------------------------------------------------


def test_probe_fits_a_separable_task_and_reads_image_labels():
    from train import probe

    torch.manual_seed(0)
    x = torch.randn(60, 8)
    y = ["a" if v > 0 else "b" for v in x[:, 3].tolist()]
    assert probe.accuracy(probe.fit_predict(x[:40], y[:40], x[40:]), y[40:]) >= 90
    rows = probe.image_labels(SOURCES["brain"])
    assert len(rows) == 1005
    for image, _, found in rows[:40] + rows[-40:]:
        folder, boxes = brain_truth(image)
        assert found["tumor_presence"] == ("yes" if boxes else "no")
        if "tumor_side" in found:  # an off-centre box: where its centre is
            x_centre = float(boxes[0].split()[1])
            assert found["tumor_side"] == ("left" if x_centre < 0.5 else "right")
    assert sum("tumor_side" in found for _, _, found in rows[-40:]) >= 10


def test_probe_lays_vision_tokens_out_in_their_grid():
    from train import probe

    tokens = torch.arange(5 * 3, dtype=torch.float).reshape(1, 5, 3)  # a class token, then 2 x 2 patches of 3 channels
    grid = probe.token_grid(tokens)
    assert grid.shape == (1, 3, 2, 2) and grid[0, :, 0, 1].tolist() == tokens[0, 2].tolist()  # row 0, column 1
    assert grid[0, :, 1, 0].tolist() == tokens[0, 3].tolist()
    with pytest.raises(UserFacingError, match="not a square grid"):
        probe.token_grid(torch.zeros(1, 7, 3))


def test_probe_cli_rejects_plain_sources(capsys):
    from train import probe

    with pytest.raises(SystemExit) as exit_info:
        probe.main(["--data", str(VQA_RAD / "vqa_rad.jsonl")])
    assert exit_info.value.code == 2 and "labels:PATH" in capsys.readouterr().err


# --- the shipped adapter reads brain MRI -----------------------------------------------------------------------------


def test_shipped_adapter_answers_fixed_val_slices_tumour_questions(medvlm_tiny):
    """The first four val slices of each kind (tumour-free, pituitary, meningioma, glioma: a fixed pick, not the
    ones it gets right), asked three held-out wordings it never trained on, one of them reversed ("Is this brain
    normal?"), and the type. A model that answers from the wording cannot pass: each wording must get "no" on some
    slices and "yes" on others, and "normal?" the other way round."""
    from medvlm.chat import GenerationSettings

    val = load_examples(SOURCES["brain"], "val").examples
    names = sorted({Path(e.image_path).name for e in val if e.task != "tumor_presence_not_brain"})
    picked = {n for prefix in ("bg_", "c0_", "c1_", "c2_") for n in [x for x in names if x.startswith(prefix)][:4]}
    wordings_asked = ("Can you see a tumour?", "Is any mass present?", "Is this brain normal?")
    asked = [e for e in val if Path(e.image_path).name in picked
             and (e.task == "tumor_presence" and e.question in wordings_asked or e.question == wordings.TYPE_HELDOUT[0].text)]
    scores, records = grounding.evaluate(medvlm_tiny, asked, True, GenerationSettings(max_new_tokens=8, temperature=0.0), 16)
    presence = scores["tasks"]["tumor_presence"]
    assert presence["closed_n"] == 48 and presence["wordings"]["worst"] >= 85  # per wording: 4 tumour-free, 12 tumour slices
    assert presence["wordings"]["consistency"]["value"] >= 85
    assert scores["tasks"]["tumor_type"]["closed_accuracy"] >= 60  # 12 slices, a third is chance
    assert scores["image_reliance"] > 15  # the same questions about other slices: it was reading these ones
