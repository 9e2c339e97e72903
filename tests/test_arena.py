"""review.arena on a real store: pairs from runs that answered the same items, sides drawn and stored, a blinded queue
that interleaves model pairs, votes with undo, flagged answers, and the votes as a leaderboard."""
import random
import re

import pytest

from medvlm import leaderboard
from medvlm.errors import UserFacingError
from medvlm.store import Store
from review import arena, users

MODELS = ("llava-1.5-7b", "medgemma-4b", "medvlm-tiny")


@pytest.fixture
def study(tmp_path):
    """Three runs (one per model) answering the same 12 items; a fourth run answers 4 of them."""
    store = Store(tmp_path / "arena.db")
    items = [store.add_item("vqa-rad", f"Question {k}?", "yes", "CLOSED", image_ref=f"img{k}.png", image_hash=str(k)) for k in range(12)]
    runs = {}
    for model in MODELS:
        runs[model] = store.add_run(model, "vqa-rad", "test", adapter="runs/pathvqa-qlora/" if model == "llava-1.5-7b" else None)
        for k, item in enumerate(items):
            store.add_prediction(runs[model], item, f"{model[:3]} answer {k}")
    runs["late"] = store.add_run("smolvlm-256m", "vqa-rad", "test")
    for item in items[:4]:
        store.add_prediction(runs["late"], item, "no")
    users.add(store, "ada", "ada-password-1", admin=True)
    users.add(store, "bob", "bob-password-1")
    yield store, runs, items
    store.close()


def reviewer(store, name):
    return store.reviewer(name)["id"]


def test_runs_become_pairs_of_answers_to_the_same_item_sides_drawn_once(study):
    store, runs, _ = study
    assert arena.enter_runs(store, [runs[m] for m in MODELS], rng=random.Random(0)) == 3 * 12
    assert arena.enter_runs(store, [runs[m] for m in MODELS]) == 0  # entered again: no pair twice, either way round
    assert arena.enter_runs(store, [runs["late"], runs["medvlm-tiny"], runs["llava-1.5-7b"]], mode="one_vs_rest") == 8
    sides = store.query("SELECT pa.run_id < pb.run_id FROM arena_pairs ap JOIN predictions pa ON pa.id = ap.a_prediction "
                        "JOIN predictions pb ON pb.id = ap.b_prediction")
    assert {row[0] for row in sides} == {0, 1}  # either run may be A
    with pytest.raises(UserFacingError, match="at least two runs"):
        arena.enter_runs(store, [runs["late"]])
    with pytest.raises(UserFacingError, match="at least two runs"):
        arena.enter_runs(store, [runs["late"], 999])
    with pytest.raises(UserFacingError, match="mode is one of"):
        arena.enter_runs(store, [runs["late"], runs["medvlm-tiny"]], mode="league")


def test_the_queue_is_blinded_and_takes_model_pairs_in_turn(study):
    store, runs, _ = study
    arena.enter_runs(store, [runs[m] for m in MODELS], rng=random.Random(1))
    pending = arena.pending(store, reviewer(store, "bob"), limit=1000)
    assert len(pending) == 36 and arena.progress(store, reviewer(store, "bob")) == (0, 36)
    assert set(pending[0]) == {"pair_id", "item_id", "question", "reference", "answer_type", "image_ref", "answer_a", "answer_b"}
    assert not any(model in str(row) for row in pending for model in MODELS)  # no model, no run id
    match = {row[0]: frozenset(row[1:]) for row in store.query(
        "SELECT ap.id, pa.run_id, pb.run_id FROM arena_pairs ap JOIN predictions pa ON pa.id = ap.a_prediction "
        "JOIN predictions pb ON pb.id = ap.b_prediction")}
    assert len({match[row["pair_id"]] for row in pending[:3]}) == 3  # the first three votes reach all three model pairs
    assert [r["pair_id"] for r in arena.pending(store, reviewer(store, "ada"), limit=1000)] != [r["pair_id"] for r in pending]  # own order


def test_votes_undo_and_become_battles_without_the_flagged_ones(study):
    store, runs, items = study
    blunt = store.add_run("medgemma-4b", "vqa-rad", "other")
    store.add_prediction(blunt, items[0], "As Google's MedGemma, I see no fracture.")
    arena.enter_runs(store, [runs["medvlm-tiny"], blunt], rng=random.Random(2))
    flagged = store.query("SELECT id FROM arena_pairs WHERE flagged = 1")
    assert len(flagged) == 1
    bob = reviewer(store, "bob")
    store.record_vote(flagged[0][0], bob, "a")
    assert arena.battles(store) == [] and len(arena.battles(store, include_flagged=True)) == 1

    arena.enter_runs(store, [runs[m] for m in MODELS], rng=random.Random(3))
    for row in arena.pending(store, bob, limit=1000)[:12]:
        store.record_vote(row["pair_id"], bob, "tie", request_id=f"{row['pair_id']}:tie")
    first = arena.pending(store, bob, limit=1000)[0]["pair_id"]
    store.record_vote(first, bob, "b", request_id="same")
    store.record_vote(first, bob, "b", request_id="same")  # sent twice: stored once
    assert len(arena.battles(store)) == 13
    assert store.undo_last_vote(bob) == first and len(arena.battles(store)) == 12
    assert first in {row["pair_id"] for row in arena.pending(store, bob, limit=1000)}  # back in the queue
    with pytest.raises(UserFacingError, match="A vote is one of"):
        store.record_vote(first, bob, "A better")
    names = {b.model_a for b in arena.battles(store)} | {b.model_b for b in arena.battles(store)}
    assert names == {"llava-1.5-7b + pathvqa-qlora", "medgemma-4b", "medvlm-tiny"}


def test_votes_rank_the_models(study):
    """Physicians preferring medgemma's answers to llava's to medvlm-tiny's: the leaderboard says so."""
    store, runs, _ = study
    arena.enter_runs(store, [runs[m] for m in MODELS], rng=random.Random(4))
    better = {"medgemma-4b": 2, "llava-1.5-7b + pathvqa-qlora": 1, "medvlm-tiny": 0}
    pairs = {row[0]: (row[1], row[2]) for row in store.query(
        "SELECT ap.id, pa.run_id, pb.run_id FROM arena_pairs ap JOIN predictions pa ON pa.id = ap.a_prediction "
        "JOIN predictions pb ON pb.id = ap.b_prediction")}
    for name in ("ada", "bob"):
        for row in arena.pending(store, reviewer(store, name), limit=1000):
            a, b = (arena.run_model(store, run) for run in pairs[row["pair_id"]])
            store.record_vote(row["pair_id"], reviewer(store, name), "a" if better[a] > better[b] else "b")
    rows = leaderboard.leaderboard(arena.battles(store), anchor="medvlm-tiny", rounds=50)
    assert [r["model"] for r in rows] == ["medgemma-4b", "llava-1.5-7b + pathvqa-qlora", "medvlm-tiny"]
    assert rows[0]["battles"] == 48 and rows[0]["wins"] == 48


# --- the Arena tab's handlers, without a browser ---------------------------------------------------------------------

def test_arena_tab_blinds_until_the_vote_refuses_stale_and_lets_admins_enter_runs(study):
    import time

    import gradio as gr

    from ui import arena_tab

    def signed_in(name, session="s1"):
        return gr.Request(username=name, session_hash=session)

    store, runs, _ = study
    desk = arena_tab.ReviewDesk(store, accounts=True)
    assert "Sign in" in arena_tab.open_arena(desk, signed_in(None))["who"]
    empty = arena_tab.open_arena(desk, signed_in("bob"))
    assert empty["question"] == "Nothing left to compare." and empty["admin"]["visible"] is False
    refused = arena_tab.enter_runs(desk, [runs["medvlm-tiny"], runs["medgemma-4b"]], "all", signed_in("bob"))
    assert "Only admins" in refused["status"] and not store.query("SELECT 1 FROM arena_pairs")
    assert "Choose runs" in arena_tab.enter_runs(desk, "1,2", "all", signed_in("ada"))["status"]  # wrong types, one line

    admin = arena_tab.open_arena(desk, signed_in("ada", "s2"))
    assert admin["admin"]["visible"] is True and len(admin["runs"]["choices"]) == 4
    entered = arena_tab.enter_runs(desk, [runs["medvlm-tiny"], runs["medgemma-4b"]], "all", signed_in("ada", "s2"))
    assert entered["status"] == "12 new pairs entered the arena." and entered["answer_a"]

    page = arena_tab.open_arena(desk, signed_in("bob"))
    shown = {k: v for k, v in page.items() if k not in ("admin", "panel", "runs")}
    assert "0 / 12 compared" in page["progress"] and not any(m in str(shown) for m in ("medvlm-tiny", "medgemma", "run "))
    too_soon = arena_tab.vote(desk, "a", page["item"], "", signed_in("bob"))
    assert "Not saved" in too_soon["status"]
    time.sleep(arena_tab.MIN_DWELL_S)
    saved = arena_tab.vote(desk, "both_bad", page["item"], "both miss the fracture", signed_in("bob"))
    named = saved["status"].replace("\\", "")  # Markdown-escaped names
    assert named.startswith("Saved: both bad. A was ") and "medvlm-tiny" in named and "medgemma-4b" in named
    assert "1 / 12 compared" in saved["progress"]
    assert "no longer on screen" in arena_tab.vote(desk, "a", page["item"], "", signed_in("bob"))["status"]
    assert [v["note"] for v in store.current_votes()] == ["both miss the fracture"]
    undone = arena_tab.undo_vote(desk, signed_in("bob"))
    assert undone["status"].startswith("Undone") and undone["item"].split(":")[1] == page["item"].split(":")[1]
    skipped = arena_tab.skip_pair(desk, signed_in("bob"))
    assert skipped["status"] == "Skipped." and skipped["item"].split(":")[1] != page["item"].split(":")[1]


def test_the_report_and_the_export_carry_the_arena(study, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(leaderboard, "BOOTSTRAP_ROUNDS", 20)  # the intervals' maths is test_leaderboard's
    store, runs, _ = study
    from review import report

    assert report.arena_leaderboard(store) == []  # no votes yet: no table
    arena.enter_runs(store, [runs["medvlm-tiny"], runs["medgemma-4b"]], rng=random.Random(5))
    bob = reviewer(store, "bob")
    for row in arena.pending(store, bob, limit=1000):
        a_run = store.query("SELECT pa.run_id FROM arena_pairs ap JOIN predictions pa ON pa.id = ap.a_prediction WHERE ap.id = ?",
                            [row["pair_id"]])[0][0]
        store.record_vote(row["pair_id"], bob, "a" if a_run == runs["medgemma-4b"] else "b", note="clearer")
    ranked = report.arena_rows(report.arena_leaderboard(store))
    assert [r["model"] for r in ranked] == ["medgemma-4b", "medvlm-tiny"] and ranked[0]["rank"] == 1 and ranked[0]["wins"] == 12
    written = report.export(store, tmp_path / "export")
    votes = (tmp_path / "export" / "arena_votes.csv").read_text().splitlines()
    assert len(votes) == 13 and "bob" in votes[1] and "clearer" in votes[1] and "medgemma-4b" in votes[1]
    assert tmp_path / "export" / "arena_votes.jsonl" in written
    assert report.main(["--db", str(store.path)]) == 0
    printed = capsys.readouterr().out
    assert "Arena: physicians' pairwise votes" in printed and "medgemma-4b" in printed.split("Arena:", 1)[1]
    # The Evaluation tab (admins): the table, a plot, the anchor chosen from the models voted on.
    import gradio as gr

    from ui import evaluation_tab

    ada = gr.Request(username="ada", session_hash="s9")
    shown = evaluation_tab.load(store, True, "all", "medvlm-tiny", ada)
    arena_table = shown["arena"]["value"]
    assert list(arena_table["model"]) == ["medgemma-4b", "medvlm-tiny"] and list(arena_table["score"])[1] == 1000.0
    assert shown["arena_plot"]["value"].endswith(".png") and shown["anchor"]["choices"] == ["medgemma-4b", "medvlm-tiny"]
    headline = shown["headline"]["value"].set_index("model")["arena (95% CI)"]
    assert headline["medvlm-tiny"] == "1000 (1000–1000)" and re.fullmatch(r"1\d{3} \(1\d{3}–1\d{3}\)", headline["medgemma-4b"])
    gone = evaluation_tab.load(store, True, "all", "llava-1.5-7b", ada)  # no votes for it: the default anchor, and why
    assert r"No votes for 'llava\-1\.5\-7b'" in gone["notice"] and list(gone["arena"]["value"]["score"])[0] == 1000.0  # medgemma-4b, first by name
    hostile = evaluation_tab.load(store, True, "all", "<img src=x onerror=alert(1)>", ada)["notice"]  # shown as text
    assert "No votes for" in hostile and "<img" not in hostile and "&lt;img" in hostile
    assert report.main(["--db", str(store.path), "--anchor", "nope"]) == 2


def test_the_study_checks_position_bias_reviewer_agreement_and_the_verdicts(study, tmp_path):
    """Two reviewers who always vote A: a position bias whose interval excludes 50 %, perfect agreement between them,
    and, where physicians graded exactly one answer of a pair right, votes that follow the side and not the verdict."""
    from review import report

    store, runs, _ = study
    arena.enter_runs(store, [runs["medvlm-tiny"], runs["medgemma-4b"]], rng=random.Random(6))
    assert report.arena_checks(store)["decisive_votes"] == 0
    assert report.arena_checks_line(report.arena_checks(store)).startswith("No decisive votes yet")
    ada, bob = reviewer(store, "ada"), reviewer(store, "bob")
    sides = store.query("SELECT id, a_prediction, b_prediction FROM arena_pairs ORDER BY id")
    for pair, _, _ in sides:
        for who in (ada, bob):
            store.record_vote(pair, who, "a")
    for _, a, b in sides[:6]:  # physicians: B right, A wrong on six pairs
        store.record_verdict(a, ada, "wrong")
        store.record_verdict(b, ada, "correct")
    checks = report.arena_checks(store)
    assert checks["decisive_votes"] == 24 and checks["share_for_a"] == 1.0 and checks["share_for_a_ci95"][0] > 0.5
    assert checks["kappa_kind"] == "Cohen" and checks["kappa_pairs"] == 12
    assert checks["verdict_pairs"] == 12 and checks["agrees_with_verdicts"] == 0.0  # 6 pairs x 2 reviewers, all for the wrong one
    line = report.arena_checks_line(checks)
    assert "100% of 24 decisive votes went to A" in line and "in 0% of 12 pairs" in line
    written = report.export(store, tmp_path / "export")
    assert tmp_path / "export" / "arena_leaderboard.json" in written
    import json

    exported = json.loads((tmp_path / "export" / "arena_leaderboard.json").read_text())
    assert exported["checks"]["share_for_a"] == 1.0 and {r["model"] for r in exported["leaderboard"]} == {"medvlm-tiny", "medgemma-4b"}
