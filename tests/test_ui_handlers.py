"""The tabs' handlers, called as Gradio calls them but without a browser: a real model, a real review database."""
import inspect
import time

import gradio as gr
import pytest

from medvlm.errors import UserFacingError
from medvlm.host import ModelHost
from medvlm.store import Store
from review import users
from ui import chat_tab, evaluation_tab, review_tab
from ui.events import bind

PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def host(medvlm_tiny):
    host = ModelHost(device="cpu")
    host.adopt(medvlm_tiny)
    return host


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "review.db")
    users.add(store, "ada", PASSWORD, admin=True)
    users.add(store, "bob", PASSWORD)
    yield store
    store.close()


def signed_in(name: str | None, session: str = "s1") -> gr.Request:
    return gr.Request(username=name, session_hash=session)


def test_bind_keys_updates_by_component_and_hides_the_context():
    first, second = gr.Textbox(render=False), gr.Markdown(render=False)

    def handler(store, text, request: gr.Request):
        return {"status": f"{store}:{text}:{request.username}"}

    def streaming(store, text):
        yield {"status": text}
        yield {"status": text * 2, "other": store}

    bound = bind(handler, {"status": second, "other": first}, store="db")
    assert list(inspect.signature(bound.fn).parameters) == ["text", "request"]  # what Gradio fills in
    assert bound.outputs == [second, first]
    assert bound.fn("hi", signed_in("ada")) == {second: "db:hi:ada"}
    streamed = bind(streaming, {"status": second, "other": first}, store="db").fn
    assert inspect.isgeneratorfunction(streamed)  # so Gradio streams it
    assert list(streamed("x")) == [{second: "x"}, {second: "xx", first: "db"}]
    with pytest.raises(TypeError, match="takes no host"):
        bind(handler, {}, host=None)
    # Nothing to change: every output skipped (Gradio takes a bare {} for one missing value, an error on the page).
    assert bind(lambda: {}, {"status": second, "other": first}).fn() == {second: gr.skip(), first: gr.skip()}


def test_model_host_holds_its_lock_for_the_whole_answer(host):
    from medvlm.chat import GenerationSettings

    lock = host.generating["medvlm-tiny"]
    held = [(lock.locked(), host.busy["medvlm-tiny"]) for _ in host.stream_reply(None, [], "Say hello.", None, GenerationSettings(max_new_tokens=4))]
    assert held and all(locked and busy == 1 for locked, busy in held)  # not unloaded while it answers
    assert not lock.locked() and host.busy["medvlm-tiny"] == 0


def test_chat_upload_ask_and_follow_up(host, vqa_rad_image, tmp_path):
    bad = tmp_path / "scan.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a truncated PNG
    before = chat_tab.Conversation()
    update = chat_tab.on_upload(str(bad), before)
    assert update["conversation"] is before and "⚠️" in update["status"] and "chatbot" not in update  # nothing else changes

    update = chat_tab.on_upload(str(vqa_rad_image), before)
    conversation = update["conversation"]
    assert conversation.image is not None and update["chatbot"] == [] and r"synpic54610\.jpg" in update["status"]  # Markdown-escaped

    updates = list(chat_tab.respond(host, "What organ is shown?", conversation, 0.0, 8))
    assert updates[0]["question"] == "" and "answering" in updates[0]["status"]
    final = updates[-1]
    (question, answer), = final["conversation"].turns
    assert question == "What organ is shown?" and answer and final["chatbot"][-1]["content"]
    follow_up = list(chat_tab.respond(host, "Are you sure?", final["conversation"], 0.0, 8))[-1]
    assert len(follow_up["conversation"].turns) == 2 and follow_up["chatbot"][:2] == final["chatbot"] and len(follow_up["chatbot"]) == 4
    assert list(follow_up["conversation"].messages) == follow_up["chatbot"]  # the chat as drawn, kept for the next turn

    refused = list(chat_tab.respond(host, "   ", final["conversation"], 0.0, 8))
    assert len(refused) == 1 and refused[0]["chatbot"] == final["chatbot"] and "⚠️" in refused[0]["status"] and "question" not in refused[0]
    # What the API can send (issue 26's hostile run; the chat event skips Gradio's own checks): each a one-line
    # message, the conversation unchanged.
    for question, temperature, tokens, said in (
            ("Is it?", None, 8, "are numbers"), ("Is it?", "warm", 8, "are numbers"), ("Is it?", float("nan"), 8, "Temperature is a number"),
            ("Is it?", 0.0, None, "are numbers"), ("Is it?", 0.0, "many", "are numbers"), ("Is it?", 0.0, float("nan"), "whole number"),
            ("Is it?", 0.0, 2.5, "whole number"), ("Is it?", 0.0, [8], "are numbers"), ("Is it?", True, 8, "are numbers"),
            ("Is it?", "x" * 1_000_000, 8, "are numbers"), ("Is it?", -1, 8, "from 0 to 2"), ("Is it?", 0.0, 10**9, "from 1 to"),
            (5, 0.0, 8, "text, not int"), (["Is it?"], 0.0, 8, "text, not list"), (None, 0.0, 8, "Type a question")):
        updates = list(chat_tab.respond(host, question, conversation, temperature, tokens))
        status = updates[0]["status"]
        assert len(updates) == 1 and said in status and updates[0]["conversation"] is conversation, (question, temperature, tokens)
        assert "\n" not in status and len(status) < 300, status


def test_chat_answers_reach_review_only_from_a_signed_in_account(host, store, vqa_rad_image):
    from medvlm.images import load_image

    conversation = chat_tab.Conversation(image=load_image(vqa_rad_image), turns=(("Is this a CT?", "yes"),))
    assert "Reviewing is off" in chat_tab.send_to_review(host, store, False, conversation, None, signed_in("ada"))["status"]
    assert "Sign in" in chat_tab.send_to_review(host, store, True, conversation, None, signed_in(None))["status"]
    assert store.query("SELECT COUNT(*) FROM predictions")[0][0] == 0
    assert "Sent" in chat_tab.send_to_review(host, store, True, conversation, None, signed_in("bob"))["status"]
    assert store.query("SELECT COUNT(*) FROM predictions")[0][0] == 1


def test_review_handlers_grade_refuse_stale_and_undo(store):
    run = store.add_run("medvlm-tiny", "vqa-rad", "test")
    for k in range(3):
        store.add_prediction(run, store.add_item("vqa-rad", f"Question {k}?", "yes", "CLOSED", image_hash=f"h{k}"), "yes")
    desk = review_tab.ReviewDesk(store, accounts=True)
    assert review_tab.grade(desk, "correct", "x", "", "all", "all", signed_in(None)) == {"status": "⚠️ Sign in first."}

    page = review_tab.open_review(desk, "all", "all", signed_in("bob"))
    assert page["who"].startswith("Signed in as **bob** (reviewer)") and "0 / 3 graded" in page["progress"]
    token = page["item"]
    too_soon = review_tab.grade(desk, "correct", token, "", "all", "all", signed_in("bob"))
    assert "Not saved" in too_soon["status"]  # within MIN_DWELL_S of being shown: nobody read it
    time.sleep(review_tab.MIN_DWELL_S)
    saved = review_tab.grade(desk, "wrong", token, "a note", "all", "all", signed_in("bob"))
    assert saved["status"] == "Saved **wrong**." and "1 / 3 graded" in saved["progress"]  # no model named to a reviewer
    stale = review_tab.grade(desk, "correct", token, "", "all", "all", signed_in("bob"))
    assert "no longer on screen" in stale["status"]
    assert [v["verdict"] for v in store.current_verdicts()] == ["wrong"]

    undone = review_tab.undo_last(desk, "all", "all", signed_in("bob"))
    assert undone["status"].startswith("Undone") and undone["item"].split(":")[1] == token.split(":")[1]
    assert [v["verdict"] for v in store.current_verdicts()] == []
    # Another session of another reviewer has its own queue and sees the model once it has graded (admin).
    admin = review_tab.open_review(desk, "all", "all", signed_in("ada", "s2"))
    time.sleep(review_tab.MIN_DWELL_S)
    assert "medvlm-tiny (run" in review_tab.grade(desk, "correct", admin["item"], "", "all", "all", signed_in("ada", "s2"))["status"]


def test_evaluation_tab_is_for_admins_only(store):
    run = store.add_run("medvlm-tiny", "vqa-rad", "test")
    store.add_prediction(run, store.add_item("vqa-rad", "Is it?", "yes", "CLOSED", image_hash="h"), "yes")
    assert "Only admins" in evaluation_tab.load(store, True, "all", None, signed_in("bob"))["notice"]
    assert evaluation_tab.export_all(store, True, signed_in("bob"))["files"] is None
    shown = evaluation_tab.load(store, True, "all", None, signed_in("ada"))
    assert shown["notice"] == "" and shown["table"]["value"]["model"].tolist() == ["medvlm-tiny"]
    assert shown["headline"]["value"]["model"].tolist() == ["medvlm-tiny"] and shown["headline"]["visible"]
    # A section with nothing in it says what to run instead of showing an empty table.
    assert not shown["arena"]["visible"] and "Nothing yet" in shown["arena_empty"]["value"] and shown["arena_empty"]["visible"]
    assert not shown["comparison_plot"]["visible"] and not shown["headline_empty"]["visible"]


# --- each session its own model: the pool --------------------------------------------------------------------------


def renamed(loaded, name):
    from dataclasses import replace

    return replace(loaded, spec=replace(loaded.spec, name=name))


def test_two_sessions_on_two_models_at_once_each_answered_by_its_own(medvlm_tiny, medvlm_tiny_base, store, vqa_rad_image):
    import threading

    from medvlm.chat import GenerationSettings, stream_reply
    from medvlm.images import load_image

    host = ModelHost(device="cpu")
    host.adopt(medvlm_tiny)
    host.adopt(renamed(medvlm_tiny_base, "bare"))
    image, question = load_image(str(vqa_rad_image)), "Is there a mass?"
    settings = GenerationSettings(max_new_tokens=6)
    expected = {name: list(stream_reply(host.model(name), [], question, image, settings))[-1] for name in ("medvlm-tiny", "bare")}
    assert expected["medvlm-tiny"] != expected["bare"]  # else this test could not tell them apart

    # Bob's session switches to "bare"; Ada's stays on the default. Neither changes the other's.
    switched = chat_tab.switch_model(host, store, True, "bare", None, signed_in("bob", "bob-session"))
    assert switched["model_name"] == "bare" and "Other sessions keep their models" in switched["status"]
    sessions = {"ada": None, "bob": switched["model_name"]}
    conversation = chat_tab.Conversation(image=image)
    finals, statuses = {}, {}

    def ask(who):
        updates = list(chat_tab.respond(host, question, conversation, 0.0, 6, sessions[who]))
        statuses[who], finals[who] = updates[0]["status"], updates[-1]["conversation"].turns[-1][1]

    threads = [threading.Thread(target=ask, args=(who,)) for who in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert finals == {"ada": expected["medvlm-tiny"], "bob": expected["bare"]}
    assert statuses["ada"].startswith(r"medvlm\-tiny is answering") and statuses["bob"].startswith("bare is answering")
    assert host.generating["medvlm-tiny"] is not host.generating["bare"]  # each model takes its own turns


def test_the_pool_unloads_the_least_recently_used_never_one_answering_or_pinned(medvlm_tiny, medvlm_tiny_base, store):
    from medvlm.host import model_bytes

    host = ModelHost(device="cpu", budget_gb=1.5 * model_bytes(medvlm_tiny) / 1e9)  # room for one
    host.adopt(renamed(medvlm_tiny_base, "bare"))
    host.adopt(medvlm_tiny)  # over the budget: "bare", least recently used, goes
    assert list(host.pool) == ["medvlm-tiny"]
    host.adopt(renamed(medvlm_tiny_base, "bare"))
    assert list(host.pool) == ["bare"]
    with host.using("bare"):  # answering: never unloaded, so there is no room for another
        with pytest.raises(UserFacingError, match="Not enough room for medvlm-tiny"):
            host.model("medvlm-tiny")
    host.set_rules(["bare"], None)  # pinned
    with pytest.raises(UserFacingError, match="answering or pinned"):
        host.model("medvlm-tiny")
    assert list(host.pool) == ["bare"] and not host.loading and host.busy["bare"] == 0
    host.set_rules([], None)
    assert host.model("medvlm-tiny").spec.adapter and list(host.pool) == ["medvlm-tiny"]  # loaded again; "bare" went


def test_admins_pin_and_limit_what_reviewers_pick(medvlm_tiny, medvlm_tiny_base, store):
    host = ModelHost(device="cpu")
    host.adopt(medvlm_tiny)
    host.adopt(renamed(medvlm_tiny_base, "bare"))
    refused = chat_tab.set_pool_rules(host, store, True, ["bare"], ["medvlm-tiny"], signed_in("bob"))
    assert "Only admins" in refused["status"] and host.pinned == set() and host.reviewer_models is None
    done = chat_tab.set_pool_rules(host, store, True, ["bare"], ["medvlm-tiny"], signed_in("ada"))
    assert "Pinned: bare" in done["status"] and host.reviewer_models == {"medvlm-tiny"}
    assert "bare (loaded, pinned, admins only)" in [label for label, _ in host.choices()]
    opened = chat_tab.show_pool(host)  # a page opened now shows the saved rules, not the app's start
    assert opened["pinned"]["value"] == ["bare"] and opened["allowed"]["value"] == ["medvlm-tiny"]
    assert ("bare (loaded, pinned, admins only)", "bare") in opened["picker"]["choices"]
    kept = chat_tab.switch_model(host, store, True, "bare", None, signed_in("bob"))
    assert "model_name" not in kept and "Admins keep bare from reviewers" in kept["status"]
    assert chat_tab.switch_model(host, store, True, "bare", None, signed_in("ada"))["model_name"] == "bare"
    assert "Unknown model" in chat_tab.switch_model(host, store, True, ["bare"], None, signed_in("ada"))["status"]
    assert "lists of model names" in chat_tab.set_pool_rules(host, store, True, "bare", 3, signed_in("ada"))["status"]
    assert r"Unknown model\(s\)\: nope" in chat_tab.set_pool_rules(host, store, True, ["nope"], [], signed_in("ada"))["status"]


# --- live battles (the Arena tab) -----------------------------------------------------------------------------------


@pytest.fixture
def two_model_host(medvlm_tiny, medvlm_tiny_base):
    host = ModelHost(device="cpu")
    host.adopt(medvlm_tiny)
    host.adopt(renamed(medvlm_tiny_base, "bare"))
    return host


def test_two_models_are_drawn_only_from_those_that_can_answer_together(host, two_model_host):
    import random

    from review import arena

    with pytest.raises(UserFacingError, match="needs two models that can answer here; 1 can"):
        arena.contenders(host, admin=True)
    drawn = {arena.contenders(two_model_host, admin=True, rng=random.Random(seed)) for seed in range(12)}
    assert drawn == {("medvlm-tiny", "bare"), ("bare", "medvlm-tiny")}  # either may be A
    two_model_host.set_rules([], ["medvlm-tiny"])  # admins keep "bare" from reviewers: no battle for them
    with pytest.raises(UserFacingError, match="1 can"):
        arena.contenders(two_model_host, admin=False)
    two_model_host.set_rules([], None)
    two_model_host.budget = max(two_model_host.pool_bytes.values()) + 1  # each fits alone, not both
    with pytest.raises(UserFacingError, match="fit in the model memory budget"):
        arena.contenders(two_model_host, admin=True)


def test_a_live_battle_is_blind_until_the_vote_and_joins_the_leaderboard(two_model_host, store, vqa_rad_image):
    from review import arena, queue
    from ui import live_battle

    host, bob = two_model_host, signed_in("bob", "live")
    sent = []  # every update the page (or the API) receives before the vote

    def seen(update):
        sent.append(update)
        return update

    battle = seen(live_battle.new_battle(host, store, True, live_battle.LiveBattle(), bob))["battle"]
    assert set(battle.models) == {"medvlm-tiny", "bare"}
    battle = seen(live_battle.on_upload(str(vqa_rad_image), battle))["battle"]
    assert battle.models and battle.image is not None
    for question in ("Is there a mass?", "Which organ is this?"):  # a follow-up goes to both
        updates = [seen(u) for u in live_battle.ask(host, store, True, question, battle, bob)]
        battle = updates[-1]["battle"]
    assert len(battle.questions) == 2 and all(len(said) == 2 and all(said) for said in battle.answers)
    assert updates[0]["status"] == "Both models are answering…" and len(updates[-1]["chat_a"]) == 4
    shown = repr([{k: v for k, v in update.items() if k != "battle"} for update in sent])  # "battle" stays on the server
    assert "medvlm-tiny" not in shown and "bare" not in shown

    assert "read both answers first" in live_battle.vote(host, store, True, "a", battle.token, "", battle, bob)["status"]
    time.sleep(review_tab.MIN_DWELL_S)
    assert "no longer on screen" in live_battle.vote(host, store, True, "a", "old-token", "", battle, bob)["status"]
    voted = live_battle.vote(host, store, True, "b", battle.token, "B reads the image", battle, bob)
    a, b = (queue.model_label(name, host.specs[name].adapter) for name in battle.models)
    assert voted["status"].replace("\\", "").startswith(f"Saved: B is better. A was {a}, B was {b}") and voted["battle"].decided == "b"
    assert live_battle.vote(host, store, True, "a", battle.token, "", voted["battle"], bob) == {}  # a second click: nothing
    assert [(x.model_a, x.model_b, x.outcome) for x in arena.battles(store)] == [(a, b, "b")]
    assert [v["note"] for v in store.current_votes()] == ["B reads the image"]
    assert queue.pending(store, store.reviewer("bob")["id"]) == [] and queue.progress(store, store.reviewer("bob")["id"]) == (0, 0)
    refused = list(live_battle.ask(host, store, True, "And now?", voted["battle"], bob))
    assert "This battle is decided" in refused[-1]["status"]


def test_live_battle_errors_and_votes_without_accounts_name_no_model(two_model_host, store):
    from ui import live_battle

    host = two_model_host
    assert live_battle.blinded(host, ("bare", "medvlm-tiny"), "Not enough room for medvlm-tiny; bare is answering") == \
        "Not enough room for Model B; Model A is answering"
    battle = live_battle.LiveBattle(models=("bare", "medvlm-tiny"), token="t", questions=("q",), answers=(("yes",), ("no",)))
    shown = live_battle.vote(host, store, False, "tie", "t", "", battle, signed_in(None))
    assert "A was bare, B was medvlm-tiny + medvlm-tiny-grounded" in shown["status"].replace("\\", "") and "Not stored" in shown["status"]
    assert store.current_votes() == []
    assert "Ask a question first" in live_battle.vote(host, store, True, "a", "", "", live_battle.LiveBattle(), signed_in("bob"))["status"]
    assert "Sign in" in live_battle.vote(host, store, True, "a", "t", "", battle, signed_in(None))["status"]
    empty = list(live_battle.ask(host, store, True, "   ", battle, signed_in("bob")))
    assert empty[-1]["status"].startswith("⚠️")
    for wrong in (None, 123, ["a"]):  # what the API can send for the question
        assert list(live_battle.ask(host, store, True, wrong, battle, signed_in("bob")))[-1]["status"].startswith("⚠️")
    answered = live_battle.LiveBattle(models=("bare", "medvlm-tiny"), token="t", questions=("q",), answers=(("yes",), ("no",)))
    for token, note in ((None, ""), (["t"], ""), ("t", {"x": 1}), ("t", 7)):  # wrong types: one line each, nothing stored
        assert live_battle.vote(host, store, True, "a", token, note, answered, signed_in("bob"))["status"].startswith("⚠️")
    assert store.current_votes() == []


def test_the_viewer_shows_the_model_and_the_detector_exactly_the_slice_and_window_on_screen(host, store, tmp_path):
    """A zipped CT series in the Chat tab: the status names slice and window; another slice or window starts a new
    conversation about that picture; what goes to review and to the Compare tab's detector is that rendering."""
    import numpy as np
    from hostile import write_series, zip_files
    from PIL import Image

    from medvlm.images import fingerprint
    from ui import compare_tab, scan_view

    archive = str(zip_files(tmp_path / "ct.zip", write_series(tmp_path / "ct", 9)))
    update = chat_tab.on_upload([archive], chat_tab.Conversation())
    view = update["view"]
    assert view.where == "slice 5/9, window full range 2143/176" and "slice 5/9" in update["status"]
    assert update["slice"]["maximum"] == 9 and update["slice"]["visible"] and "lung" in update["window"]["choices"]
    assert not update["plane"]["visible"]  # a DICOM series has its one plane

    moved = chat_tab.on_view("slice", view, update["conversation"], "full range", 0, 0, 3, None)
    moved = chat_tab.on_view("window", moved["view"], moved["conversation"], "lung", 0, 0, 3, None)
    view, conversation = moved["view"], moved["conversation"]
    assert moved["status"] == "Now slice 3/9, window lung 1500/−600: a new conversation about this picture."
    assert moved["chatbot"] == [] and (moved["width"]["value"], moved["level"]["value"]) == (1500, -600)
    expected = view.scan.render(2, view.scan.window("lung"))
    assert fingerprint(conversation.image) == fingerprint(expected) == fingerprint(Image.open(moved["preview"]).convert("RGB"))
    custom = chat_tab.on_view("custom", view, conversation, "lung", 80, 40, 3, None)
    assert custom["view"].where == "slice 3/9, window custom 80/40" and custom["window"]["value"] == scan_view.CUSTOM

    for control, args in (("slice", ("lung", 0, 0, 99, None)), ("slice", ("lung", 0, 0, "x", None)), ("custom", ("lung", "wide", 40, 3, None)),
                          ("custom", ("lung", 0, 40, 3, None)), ("window", ({"a": 1}, 0, 0, 3, None)), ("plane", ("lung", 0, 0, 3, "coronal"))):
        refused = chat_tab.on_view(control, view, conversation, *args)
        assert refused["status"].startswith("⚠️") and "\n" not in refused["status"] and refused["view"] is view, (control, args)
    assert chat_tab.on_view("slice", None, conversation, "lung", 0, 0, 3, None)["status"].startswith("⚠️")

    asked = list(chat_tab.respond(host, "Is there a tumour?", conversation, 0.0, 4))[-1]
    assert "Sent" in chat_tab.send_to_review(host, store, True, asked["conversation"], None, signed_in("bob"))["status"]
    (kept,), = store.query("SELECT image_hash FROM items")
    assert kept == fingerprint(expected)  # physicians grade the picture the model saw

    every = chat_tab.ask_every_window(host, view, asked["conversation"], "", None)
    table = every["windows_table"]["value"]
    assert list(table["window"]) == [w.label() for w in view.scan.windows] and table["answer"].str.len().min() > 0
    assert "Is there a tumour? — asked in every window of slice 3/9" in every["status"]
    assert "windows give the same answer" in every["status"] or "answers differ" in every["status"]
    png = tmp_path / "plain.png"
    Image.fromarray(np.full((32, 32), 90, np.uint8)).save(png)
    plain = chat_tab.on_upload([str(png)], chat_tab.Conversation())
    assert not plain["viewer"]["visible"] and "no windows" in chat_tab.ask_every_window(host, plain["view"], plain["conversation"], "ok?")["status"]

    seen = []
    original = host.detect
    host.detect = lambda image: seen.append(fingerprint(image)) or original(image)
    try:
        shown = compare_tab.detect_only(host, [archive], view)
        assert shown["status"].startswith("Detector only (slice 3/9, window lung 1500/−600)")
        fresh = compare_tab.detect_only(host, [str(png)], view)  # another upload: its own picture, not the view
    finally:
        host.detect = original
    assert seen[0] == fingerprint(expected) and seen[1] != seen[0] and "Detector only" in fresh["status"]
