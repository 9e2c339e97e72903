"""The arena's dataset battles: two runs' answers to the same item become a pair, voted A better / B better / tie /
both bad by physicians, blinded; the votes become medvlm.leaderboard battles.

An admin enters runs: every pair of the chosen runs ("all"), or one run against each of the others ("one_vs_rest").
Each pair's sides are drawn at random once and stored. A reviewer's queue interleaves the model pairs, so every pair
of models gets votes early: each pair gets a turn in its lane (the pairs of its two runs, in a random order) when it is
entered, and the queue takes turn 0 of every lane, then turn 1, ..., each reviewer from a turn of their own. Like the
review queue (review.queue) the next pair is one read along a stored index, not a sort of every pair per click. A pair
whose answer names a model or a vendor is flagged; the leaderboard can leave flagged battles out, as FastChat drops
them. Live battles (ui/live_battle.py) are stored as pairs too, each model's answers in a run on LIVE_DATASET.
"""
import itertools
import random
import re

from medvlm.errors import UserFacingError
from medvlm.leaderboard import Battle
from medvlm.store import Store, shuffle_key
from review.chat_answers import keep_image
from review.queue import LIVE_DATASET, count_rows, model_label, walk

MODES = ("all", "one_vs_rest")
# Names that unblind an answer: model families and the companies behind them (case-blind, whole words).
NAMES_A_MODEL = re.compile(
    r"\b(llava|idefics|midefics|gemma|medgemma|qwen|lingshu|smolvlm|smollm|huatuo|llama|mistral|mixtral|gpt|chatgpt|openai|"
    r"claude|anthropic|gemini|google|alibaba|meta|hugging ?face|deepmind|microsoft|phi|medvlm)\b", re.IGNORECASE)

PAIR_SQL = """
    SELECT ap.id, ap.item_id, i.question, i.reference, i.answer_type, i.image_ref, pa.answer, pb.answer, pa.run_id, pb.run_id,
           ap.flagged
    FROM arena_pairs ap JOIN items i ON i.id = ap.item_id
    JOIN predictions pa ON pa.id = ap.a_prediction JOIN predictions pb ON pb.id = ap.b_prediction
"""
PAIR_FIELDS = ("pair_id", "item_id", "question", "reference", "answer_type", "image_ref", "answer_a", "answer_b", "run_a", "run_b",
               "flagged")
SHOWN = PAIR_FIELDS[:8]  # what a reviewer sees before the vote: no run, no model
UNVOTED = """(SELECT vote FROM arena_votes v WHERE v.reviewer_id = :reviewer AND v.pair_id = ap.id
              ORDER BY v.id DESC LIMIT 1) IS NULL"""
NEXT_SQL = f"""
    SELECT ap.id, ap.item_id, i.question, i.reference, i.answer_type, i.image_ref, pa.answer, pb.answer
    FROM arena_pairs ap INDEXED BY arena_pairs_in_queue JOIN items i ON i.id = ap.item_id
    JOIN predictions pa ON pa.id = ap.a_prediction JOIN predictions pb ON pb.id = ap.b_prediction
    WHERE ap.turn >= :low AND ap.turn < :high AND ap.id NOT IN (SELECT value FROM json_each(:skipped)) AND {UNVOTED}
    ORDER BY ap.turn, ap.shuffle LIMIT :limit
"""
NEXT_TURN_SQL = """
    SELECT COALESCE(MAX(ap.turn) + 1, 0) FROM arena_pairs ap
    JOIN predictions pa ON pa.id = ap.a_prediction JOIN predictions pb ON pb.id = ap.b_prediction
    WHERE pa.run_id IN (?, ?) AND pb.run_id IN (?, ?)
"""


def pairs(store: Store, pair_id: int | None = None) -> list[dict]:
    """Every pair (or one) with its item, both answers and the runs behind A and B."""
    sql = PAIR_SQL + ("" if pair_id is None else " WHERE ap.id = ?")
    return [dict(zip(PAIR_FIELDS, row)) for row in store.query(sql, [] if pair_id is None else [pair_id])]


def votes_on(store: Store, pair_id: int, reviewer_id: int) -> int:
    """How many vote rows (votes, changes, undos) this reviewer has on this pair: names a showing of it."""
    return store.query("SELECT COUNT(*) FROM arena_votes WHERE pair_id = ? AND reviewer_id = ?", [pair_id, reviewer_id])[0][0]


def names_a_model(text: str) -> bool:
    return bool(NAMES_A_MODEL.search(text or ""))


def enter_runs(store: Store, run_ids: list[int], mode: str = "all", rng: random.Random | None = None) -> int:
    """Pairs for every item that two entered runs both answered -> how many new pairs. mode "all": every two of
    run_ids; "one_vs_rest": run_ids[0] against each of the others."""
    if mode not in MODES:
        raise UserFacingError(f"The arena mode is one of {', '.join(MODES)}, not {mode!r}.")
    run_ids = list(dict.fromkeys(run_ids))
    known = {row[0] for row in store.query("SELECT id FROM runs")}
    if len(run_ids) < 2 or not set(run_ids) <= known:
        raise UserFacingError("Choose at least two runs that exist.")
    matches = itertools.combinations(run_ids, 2) if mode == "all" else ((run_ids[0], other) for other in run_ids[1:])
    rng = rng or random.SystemRandom()
    added = 0
    for first, second in matches:
        answered = store.query(
            """SELECT p.item_id, p.id, p.answer, q.id, q.answer FROM predictions p JOIN predictions q ON q.item_id = p.item_id
               WHERE p.run_id = ? AND q.run_id = ? ORDER BY p.item_id""", [first, second])
        rng.shuffle(answered)  # the lane's order: which of its pairs come up first
        turn = store.query(NEXT_TURN_SQL, [first, second, first, second])[0][0]
        for item_id, p_id, p_answer, q_id, q_answer in answered:
            a, b = (p_id, q_id) if rng.random() < 0.5 else (q_id, p_id)
            flagged = names_a_model(p_answer) or names_a_model(q_answer)
            if store.add_arena_pair(item_id, a, b, flagged, turn) is not None:
                added, turn = added + 1, turn + 1
    return added


def pending(store: Store, reviewer_id: int, skipped: tuple = (), limit: int = 1) -> list[dict]:
    """The next `limit` pairs this reviewer has not voted on, blinded (question, reference, image, answers A and B;
    no run, no model), lanes taken in turn; the skipped ones (pair ids) only once nothing else is left."""
    last_turn = store.query("SELECT MAX(turn) FROM arena_pairs")[0][0]
    if last_turn is None:
        return []
    start = shuffle_key("arena", reviewer_id) % (last_turn + 1)
    stretches = [{"low": start, "high": last_turn + 1}, {"low": 0, "high": start}]
    return walk(store, NEXT_SQL, SHOWN, stretches, {"reviewer": reviewer_id}, skipped, limit)


def pending_one(store: Store, reviewer_id: int, pair_id: int) -> dict | None:
    """That pair, blinded, if this reviewer has not voted on it."""
    rows = store.query(f"SELECT ap.id FROM arena_pairs ap WHERE ap.id = :pair AND {UNVOTED}", {"pair": pair_id, "reviewer": reviewer_id})
    return {k: v for k, v in pairs(store, pair_id)[0].items() if k in SHOWN} if rows else None


def progress(store: Store, reviewer_id: int) -> tuple[int, int]:
    """(how many pairs this reviewer has voted on, how many there are)."""
    return len(store.current_votes(reviewer_id)), count_rows(store, "arena_pairs")


def run_model(store: Store, run_id: int) -> str:
    """A run's model as the leaderboard names it (model_label)."""
    return model_label(*store.query("SELECT model, adapter FROM runs WHERE id = ?", [run_id])[0])


def battles(store: Store, include_flagged: bool = False) -> list[Battle]:
    """Every reviewer's current vote as a battle between the two answers' models (A's model first)."""
    by_id = {pair["pair_id"]: pair for pair in pairs(store)}
    names: dict[int, str] = {}
    out = []
    for vote in store.current_votes():
        pair = by_id[vote["pair_id"]]
        if pair["flagged"] and not include_flagged:
            continue
        run_a, run_b = pair["run_a"], pair["run_b"]
        for run in (run_a, run_b):
            names.setdefault(run, run_model(store, run))
        if names[run_a] != names[run_b]:  # two runs of one model are no battle between models
            out.append(Battle(names[run_a], names[run_b], vote["vote"]))
    return out


def contenders(host, admin: bool, rng: random.Random | None = None) -> tuple[str, str]:
    """Two models drawn at random for a live battle from those that can answer now and this account may use: served
    ones, or in-process ones whose memory fits the pool's budget together. Raises UserFacingError saying why not."""
    usable = [name for name, spec in host.specs.items() if host.may_pick(name, admin) and host.unavailable_reason(name) is None]
    if len(usable) < 2:
        raise UserFacingError(f"A live battle needs two models that can answer here; {len(usable)} can "
                              f"({', '.join(usable) or 'none'}). Add a model server in the Chat tab, or start with more models.")
    size = {name: host.pool_bytes.get(name, host.estimate(host.specs[name])) for name in usable}
    fitting = [(a, b) for a, b in itertools.combinations(usable, 2) if size[a] + size[b] <= host.budget]
    if not fitting:
        raise UserFacingError(f"No two of {', '.join(usable)} fit in the model memory budget ({host.budget / 1e9:.1f} GB) together.")
    rng = rng or random.SystemRandom()
    first, second = rng.choice(fitting)
    return (first, second) if rng.random() < 0.5 else (second, first)


def record_live_battle(store: Store, models: tuple, image, questions: list[str], answers: tuple[list[str], list[str]],
                       vote: str, reviewer_id: int, note: str | None, request_id: str) -> int:
    """A decided live battle as an arena pair (its item: the image and the questions; its answers: each model's, in a
    run of its own on LIVE_DATASET, A first) and the reviewer's vote on it -> the pair id. `models`: (name, adapter)
    for A and B. The same two models answering the same questions about the same image again share the pair."""
    image_ref, image_hash = keep_image(store, image)
    item = store.add_item(LIVE_DATASET, "\n".join(questions), None, "OPEN", image_ref=image_ref, image_hash=image_hash)
    predictions = []
    for (name, adapter), said in zip(models, answers):
        settings = {"kind": "live_battle"}
        run = store.find_run(name, LIVE_DATASET, None, adapter, settings) or store.add_run(name, LIVE_DATASET, None, adapter, settings)
        predictions.append(store.add_prediction(run, item, "\n".join(said)))
    flagged = any(names_a_model(text) for said in answers for text in said)
    pair = store.add_arena_pair(item, *predictions, flagged)
    if pair is None:  # paired before, perhaps the other way round: the vote is for the same model either way
        pair, a_before = store.query("SELECT id, a_prediction FROM arena_pairs WHERE a_prediction IN (?, ?) AND b_prediction IN (?, ?)",
                                     predictions * 2)[0]
        vote = vote if a_before == predictions[0] else {"a": "b", "b": "a"}.get(vote, vote)
    store.record_vote(pair, reviewer_id, vote, note=note, request_id=request_id)
    return pair
