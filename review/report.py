"""Every evaluation run side by side: strict automatic scores, the LLaVA-Med-compatible and the notebook's lenient
scorers, physician-adjudicated accuracy with its 95 % interval, where automatic scores and physicians disagree,
and inter-rater agreement. The app's Evaluation tab shows the same tables.

    python -m review.report --db medvlm.db
    python -m review.report --db medvlm.db --export exports/     # verdicts and predictions as CSV and JSONL

Image reliance: each run's closed questions are also answered about another image (medvlm.grounding); the drop in
strict closed accuracy on those same questions, in points, is what reading the image adds (a blind model has none).
Label questions (medvlm.labels) are also scored per task.

A prediction counts as right for physicians when most of its reviewers' current verdicts are correct or rephrased
(a tie counts as wrong). Agreement: Cohen's kappa when a run has two reviewers (items both graded), Fleiss' kappa for
more (items every one of them graded).
"""
import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

from medvlm import cli, grounding, leaderboard, metrics
from medvlm.errors import UserFacingError
from medvlm.stats import cohen_kappa, fleiss_kappa, kappa_with_interval, wilson_interval
from medvlm.store import Store
from review import arena
from review.queue import model_label

PROG = "python -m review.report"

PREDICTIONS_SQL = """
    SELECT p.id, p.run_id, r.model, r.adapter, r.dataset, r.split, i.question, i.reference, i.answer_type, i.image_ref,
           p.answer, p.latency_s, p.tokens, p.p_yes
    FROM predictions p JOIN items i ON i.id = p.item_id JOIN runs r ON r.id = p.run_id ORDER BY p.run_id, p.id
"""
PREDICTION_FIELDS = ("prediction_id", "run_id", "model", "adapter", "dataset", "split", "question", "reference",
                     "answer_type", "image_ref", "answer", "latency_s", "tokens", "p_yes")


def predictions(store: Store) -> list[dict]:
    return [dict(zip(PREDICTION_FIELDS, row)) for row in store.query(PREDICTIONS_SQL)]


def image_reliance(store: Store) -> dict[int, dict]:
    """Per run: strict closed accuracy on its questions that were also asked about a swapped image, both ways."""
    paired = defaultdict(list)
    for run, reference, own, swapped in store.query(
            """SELECT s.run_id, i.reference, p.answer, s.answer FROM swapped_predictions s JOIN items i ON i.id = s.item_id
               JOIN predictions p ON p.run_id = s.run_id AND p.item_id = s.item_id"""):
        paired[run].append((metrics.closed_correct(own, reference or ""), metrics.closed_correct(swapped, reference or "")))
    result = {}
    for run, pairs in paired.items():
        own, swapped = (round(100 * sum(x) / len(pairs), 2) for x in zip(*pairs))
        result[run] = {"swapped_closed": swapped, "image_reliance": round(own - swapped, 2), "swapped_n": len(pairs)}
    return result


def task_rows(store: Store) -> list[dict]:
    """One row per run and label task: strict accuracy (closed) or recall (open), the balanced yes/no accuracy, and
    where the task was asked in several wordings the worst and mean wording, the wording consistency and the shares
    of ideal and dangerous answers, and the image reliance of its closed questions (medvlm.grounding)."""
    from medvlm.evaluate import run_records

    runs = store.query("""SELECT DISTINCT p.run_id, r.model, r.adapter FROM predictions p JOIN items i ON i.id = p.item_id
                          JOIN runs r ON r.id = p.run_id WHERE i.task IS NOT NULL ORDER BY p.run_id""")
    out = []
    for run, model, adapter in runs:
        scores = grounding.score(run_records(store, run))
        for task, s in scores.get("tasks", {}).items():
            closed, wordings, kinds = bool(s["closed_n"]), s.get("wordings") or {}, s.get("kinds") or {}
            out.append({"run": run, "model": model_label(model, adapter), "task": task,
                        "questions": s["closed_n"] + s["open_n"], "score": s["closed_accuracy"] if closed else s["open_recall"],
                        "measure": "closed accuracy" if closed else "open recall", "yes_no_balanced": s["yes_no_balanced_accuracy"],
                        "wordings": len(wordings.get("per_wording", {})) or None, "worst_wording": wordings.get("worst"),
                        "mean_wording": wordings.get("mean"), "consistency": (wordings.get("consistency") or {}).get("value"),
                        "ideal": kinds.get("ideal"), "dangerous": kinds.get("dangerous"), "image_reliance": s.get("image_reliance")})
    return out


def run_rows(store: Store, answer_type: str | None = None) -> list[dict]:
    """One row per run (optionally only CLOSED or OPEN questions) with every score the report shows."""
    verdicts = defaultdict(dict)  # prediction id -> reviewer id -> verdict
    for v in store.current_verdicts():
        verdicts[v["prediction_id"]][v["reviewer_id"]] = v["verdict"]
    by_run = defaultdict(list)
    for p in predictions(store):
        if answer_type is None or p["answer_type"] == answer_type:
            by_run[p["run_id"]].append(p)
    reliance = image_reliance(store) if answer_type in (None, "CLOSED") else {}
    rows = []
    for run_id, preds in by_run.items():
        records = [{"prediction": p["answer"], "answer": p["reference"] or "", "answer_type": p["answer_type"], "p_yes": p["p_yes"]}
                   for p in preds]
        calibrated = grounding.calibration(records)
        strict, llava_med, lenient = metrics.score(records), metrics.llava_med_score(records), metrics.lenient_score(records)
        reviewed = [(p, verdicts[p["prediction_id"]]) for p in preds if verdicts[p["prediction_id"]]]
        right = [physician_right(given) for _, given in reviewed]
        low, high = wilson_interval(sum(right), len(right))
        strict_right = [strict_correct(p) for p, _ in reviewed]
        mix = defaultdict(int)
        for _, given in reviewed:
            for v in given.values():
                mix[v] += 1
        rows.append({
            "run": run_id, "model": model_label(preds[0]["model"], preds[0]["adapter"]),
            "dataset": preds[0]["dataset"], "questions": len(preds),
            "closed_n": strict["closed_n"], "strict_closed": strict["closed_accuracy"], "strict_open_recall": strict["open_recall"],
            "strict_open_f1": strict["open_f1"], "strict_exact": strict["open_exact_match"],
            "llava_med_closed": llava_med["closed_accuracy"], "llava_med_closed_n": llava_med["closed_counted"],
            "llava_med_closed_all": llava_med["closed_accuracy_all"], "llava_med_open": llava_med["open_recall"],
            "lenient_closed": lenient["closed_accuracy"], "lenient_open": lenient["open_accuracy"],
            "swapped_closed": reliance.get(run_id, {}).get("swapped_closed"),
            "image_reliance": reliance.get(run_id, {}).get("image_reliance"), "swapped_n": reliance.get(run_id, {}).get("swapped_n"),
            "yes_no_ece": calibrated["ece"] if calibrated else None,
            "reviewed": len(reviewed), "physician_right": sum(right),
            "physician_accuracy": round(100 * sum(right) / len(right), 1) if right else None,
            "physician_ci95": (round(100 * low, 1), round(100 * high, 1)) if right else None,
            "auto_wrong_physician_right": sum(r and not s for r, s in zip(right, strict_right)),
            "auto_right_physician_wrong": sum(s and not r for r, s in zip(right, strict_right)),
            "verdict_mix": dict(mix),
            **agreement([given for _, given in reviewed]),
        })
    return rows


def headline_rows(runs: list[dict], tasks: list[dict], ranked: list[dict]) -> list[dict]:
    """One row per model, pooled over its runs (run_rows, task_rows, arena_leaderboard): the physicians' accuracy with
    its 95 % interval and how many answers they reviewed, the strict closed accuracy, the image reliance (weighted by
    the questions asked both ways), the worst held-out wording of its label tasks, and the arena score with its
    interval. None where a model has no such figure yet."""
    def weighted(rows, value, weight):
        counted = [(r[value], r[weight]) for r in rows if r[value] is not None and r[weight]]
        return round(sum(v * w for v, w in counted) / sum(w for _, w in counted), 1) if counted else None

    arena_by_model = {r["model"]: r for r in ranked}
    out = []
    for model in sorted({r["model"] for r in runs} | set(arena_by_model)):
        own = [r for r in runs if r["model"] == model]
        reviewed, right = sum(r["reviewed"] for r in own), sum(r["physician_right"] for r in own)
        low, high = wilson_interval(right, reviewed)
        worst = [t["worst_wording"] for t in tasks if t["model"] == model and t["worst_wording"] is not None]
        fought = arena_by_model.get(model)
        out.append({"model": model, "runs": len(own), "answers": sum(r["questions"] for r in own),
                    "physician_accuracy": round(100 * right / reviewed, 1) if reviewed else None,
                    "physician_ci95": (round(100 * low, 1), round(100 * high, 1)) if reviewed else None, "reviewed": reviewed,
                    "strict_closed": weighted(own, "strict_closed", "closed_n"), "image_reliance": weighted(own, "image_reliance", "swapped_n"),
                    "worst_wording": min(worst) if worst else None,
                    "arena_score": fought["score"] if fought else None, "arena_ci95": tuple(fought["ci95"]) if fought else None})
    return out


def comparison_rows(store: Store, limit: int = 10, runs: list[dict] | None = None) -> list[dict]:
    """The newest VLM-versus-detector reports (medvlm.compare), one row each: presence accuracy, sensitivity and
    specificity and type accuracy per side, kappa, and the physicians' accuracy on each side's answers so far.
    `runs`: run_rows(store) when the caller has them already."""
    physicians = {row["run"]: row["physician_accuracy"] for row in (runs if runs is not None else run_rows(store))}
    rows = []
    for c in store.comparisons(limit):
        r = c["report"]
        row = {"comparison": c["id"], "model": c["model"], "detector": c["detector"], "data": f"{c['dataset']} {c['split']}",
               "images": r["images"]}
        for side, name in (("detector", "detector"), ("vlm", "VLM"), ("vlm_grounded", "VLM+findings")):
            presence = r["presence"][side]
            row[f"{name} sens/spec/acc %"] = "/".join("-" if presence[k]["value"] is None else f"{presence[k]['value']:.0f}"
                                                      for k in ("sensitivity", "specificity", "accuracy"))
            row[f"{name} type %"] = r["type"][side]["value"]
            run = store.query("SELECT id FROM runs WHERE dataset = ? AND split IS ? AND settings LIKE ? ORDER BY id DESC LIMIT 1",
                              [c["dataset"], c["split"], f'%"side": "{side}"%'])
            row[f"{name} physicians %"] = physicians.get(run[0][0]) if run else None
        kappa = r["agreement"]["kappa_vlm_detector"]
        row["kappa VLM-detector"] = None if kappa["value"] is None else f"{kappa['value']:.2f} [{kappa['ci95'][0]:.2f}, {kappa['ci95'][1]:.2f}]"
        rows.append(row)
    return rows


def physician_right(given: dict) -> bool:
    """Most of a prediction's reviewers say correct or rephrased (a tie is wrong)."""
    return sum(v in ("correct", "rephrased") for v in given.values()) * 2 > len(given)


# Each automatic scorer as a per-answer verdict: True right, False wrong, None not scored (LLaVA-Med before #35 drops
# a wrong closed answer that holds "yes" or "no"). Open answers: strict = exact match; LLaVA-Med = every reference
# word recalled (its open figure is mean recall); lenient = the notebook's rule.
SCORERS = {
    "strict": lambda p: strict_correct(p),
    "LLaVA-Med, run_eval.py before #35": lambda p: metrics.llava_med_closed_hit(p["answer"], p["reference"] or "")
    if p["answer_type"] == "CLOSED" else metrics.llava_med_open_recall(p["answer"], p["reference"] or "") == 1.0,
    "LLaVA-Med, after #35": lambda p: bool(metrics.llava_med_closed_hit(p["answer"], p["reference"] or ""))
    if p["answer_type"] == "CLOSED" else metrics.llava_med_open_recall(p["answer"], p["reference"] or "") == 1.0,
    "lenient (notebook)": lambda p: metrics.lenient_correct(p["answer"], p["reference"] or ""),
}


def scorer_rows(store: Store) -> list[dict]:
    """How far each automatic scorer can stand in for the physicians: on every answer physicians graded, per scorer
    and question type, Cohen's kappa (95 % interval) between the scorer's right/wrong and the physicians' majority,
    their raw agreement, and the two kinds of disagreement."""
    verdicts = defaultdict(dict)
    for v in store.current_verdicts():
        verdicts[v["prediction_id"]][v["reviewer_id"]] = v["verdict"]
    graded = [(p, physician_right(verdicts[p["prediction_id"]])) for p in predictions(store) if verdicts[p["prediction_id"]]]
    rows = []
    for name, scorer in SCORERS.items():
        for answer_type in ("CLOSED", "OPEN", None):
            pairs = [(scorer(p), md) for p, md in graded if answer_type in (None, p["answer_type"])]
            scored = [(auto, md) for auto, md in pairs if auto is not None]
            if not scored:
                continue
            kappa = kappa_with_interval([auto for auto, _ in scored], [md for _, md in scored])
            rows.append({"scorer": name, "questions": (answer_type or "all").lower(), "graded": len(pairs), "scored": len(scored),
                         "agreement": round(100 * sum(auto == md for auto, md in scored) / len(scored), 1),
                         "kappa": kappa["value"], "kappa_ci95": tuple(kappa["ci95"]),
                         "auto_right_physician_wrong": sum(auto and not md for auto, md in scored),
                         "auto_wrong_physician_right": sum(md and not auto for auto, md in scored)})
    return rows


def strict_correct(p: dict) -> bool:
    if p["answer_type"] == "CLOSED":
        return metrics.closed_correct(p["answer"], p["reference"] or "")
    return metrics.open_score(p["answer"], p["reference"] or "").exact == 1.0


def agreement(graded: list[dict]) -> dict:
    """Kappa over the items the run's reviewers share: Cohen for two, Fleiss for more."""
    reviewers = sorted({r for given in graded for r in given})
    if len(reviewers) < 2:
        return {"kappa": None, "kappa_kind": None, "kappa_items": 0}
    shared = [given for given in graded if all(r in given for r in reviewers)]
    if not shared:
        return {"kappa": None, "kappa_kind": None, "kappa_items": 0}
    if len(reviewers) == 2:
        kappa, kind = cohen_kappa([g[reviewers[0]] for g in shared], [g[reviewers[1]] for g in shared]), "Cohen"
    else:
        kappa, kind = fleiss_kappa([[g[r] for r in reviewers] for g in shared]), "Fleiss"
    return {"kappa": round(kappa, 3), "kappa_kind": kind, "kappa_items": len(shared)}


def arena_leaderboard(store: Store, anchor: str | None = None, include_flagged: bool = False) -> list[dict]:
    """medvlm.leaderboard's rows from every reviewer's current vote, the anchor model (default: the first by name) at
    1000; none before two models met. Battles whose answer names a model or vendor are left out unless include_flagged."""
    battles = arena.battles(store, include_flagged)
    models = {m for b in battles for m in (b.model_a, b.model_b)}
    if len(models) < 2:
        return []
    if anchor is not None and anchor not in models:
        raise UserFacingError(f"No votes for {anchor!r} yet: anchor on one of {', '.join(sorted(models))}.")
    return leaderboard.leaderboard(battles, anchor)


def arena_checks(store: Store) -> dict:
    """What a pairwise study must show beside its leaderboard, from every reviewer's current vote:
    - position bias: the share of decisive votes (A or B better) that went to A, with its 95 % interval (0.5: none);
    - reviewer agreement: kappa on the four outcomes over pairs every reviewer voted on (Cohen for two, Fleiss for more);
    - agreement with the absolute verdicts: on pairs where physicians' verdicts call exactly one answer right, the share
      of decisive votes for that one (95 % interval)."""
    votes = store.current_votes()
    decisive = [v for v in votes if v["vote"] in ("a", "b")]
    for_a = sum(v["vote"] == "a" for v in decisive)
    low, high = wilson_interval(for_a, len(decisive))
    by_pair = defaultdict(dict)
    for v in votes:
        by_pair[v["pair_id"]][v["reviewer_id"]] = v["vote"]
    verdicts = defaultdict(dict)
    for v in store.current_verdicts():
        verdicts[v["prediction_id"]][v["reviewer_id"]] = v["verdict"]
    sides = dict((pair, (a, b)) for pair, a, b in store.query("SELECT id, a_prediction, b_prediction FROM arena_pairs"))
    settled = []  # (the vote, the side physicians call right) where exactly one side is right
    for v in decisive:
        a, b = sides[v["pair_id"]]
        if verdicts[a] and verdicts[b] and physician_right(verdicts[a]) != physician_right(verdicts[b]):
            settled.append(v["vote"] == ("a" if physician_right(verdicts[a]) else "b"))
    agree_low, agree_high = wilson_interval(sum(settled), len(settled))
    reviewers = agreement(list(by_pair.values()))
    return {"decisive_votes": len(decisive), "share_for_a": round(for_a / len(decisive), 3) if decisive else None,
            "share_for_a_ci95": (round(low, 3), round(high, 3)) if decisive else None,
            "kappa": reviewers["kappa"], "kappa_kind": reviewers["kappa_kind"], "kappa_pairs": reviewers["kappa_items"],
            "verdict_pairs": len(settled), "agrees_with_verdicts": round(sum(settled) / len(settled), 3) if settled else None,
            "agrees_with_verdicts_ci95": (round(agree_low, 3), round(agree_high, 3)) if settled else None}


def arena_checks_line(checks: dict) -> str:
    """arena_checks in one line of plain text."""
    if not checks["decisive_votes"]:
        return "No decisive votes yet: position bias and agreement follow the first A or B votes."
    low, high = checks["share_for_a_ci95"]
    said = [f"Position bias: {checks['share_for_a']:.0%} of {checks['decisive_votes']} decisive votes went to A "
            f"(95 % interval {low:.0%} to {high:.0%}; 50 % is none)"]
    said.append(f"reviewer agreement: {checks['kappa_kind']} kappa {checks['kappa']:.2f} over {checks['kappa_pairs']} shared pairs"
                if checks["kappa"] is not None else "reviewer agreement: no pair voted on by every reviewer yet")
    if checks["verdict_pairs"]:
        low, high = checks["agrees_with_verdicts_ci95"]
        said.append(f"the vote went to the answer physicians graded right in {checks['agrees_with_verdicts']:.0%} of "
                    f"{checks['verdict_pairs']} pairs where exactly one was (95 % interval {low:.0%} to {high:.0%})")
    else:
        said.append("no pair yet where physicians' verdicts call exactly one answer right")
    return "; ".join(said) + "."


def arena_rows(ranked: list[dict]) -> list[dict]:
    """arena_leaderboard's rows as report rows (intervals as tuples, as every report row writes them)."""
    return [{"rank": r["rank"], "model": r["model"], "score": r["score"], "score_ci95": tuple(r["ci95"]), "battles": r["battles"],
             "wins": r["wins"], "losses": r["losses"], "ties": r["ties"], "both_bad_share": r["both_bad_share"]}
            for r in ranked]


ARENA_VOTE_FIELDS = ("vote_id", "pair_id", "item_id", "model_a", "model_b", "reviewer", "vote", "note", "flagged", "created")
ARENA_VOTES_SQL = """
    SELECT v.id, v.pair_id, ap.item_id, pa.run_id, pb.run_id, u.name, v.vote, v.note, ap.flagged, v.created
    FROM arena_votes v JOIN reviewers u ON u.id = v.reviewer_id JOIN arena_pairs ap ON ap.id = v.pair_id
    JOIN predictions pa ON pa.id = ap.a_prediction JOIN predictions pb ON pb.id = ap.b_prediction ORDER BY v.id
"""


def export(store: Store, folder: Path) -> list[Path]:
    """predictions, verdicts and arena votes (full histories, reviewer names), each as .csv and .jsonl, into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    verdict_rows = [dict(zip(("verdict_id", "prediction_id", "reviewer", "verdict", "note", "created"), row)) for row in store.query(
        "SELECT v.id, v.prediction_id, u.name, v.verdict, v.note, v.created FROM verdicts v JOIN reviewers u ON u.id = v.reviewer_id ORDER BY v.id")]
    vote_rows = []
    for row in store.query(ARENA_VOTES_SQL):
        vote = dict(zip(ARENA_VOTE_FIELDS, row))
        vote["model_a"], vote["model_b"] = arena.run_model(store, vote["model_a"]), arena.run_model(store, vote["model_b"])
        vote_rows.append(vote)
    written = []
    for name, rows, fields in (("predictions", predictions(store), PREDICTION_FIELDS),
                               ("verdicts", verdict_rows, ("verdict_id", "prediction_id", "reviewer", "verdict", "note", "created")),
                               ("arena_votes", vote_rows, ARENA_VOTE_FIELDS)):
        with open(folder / f"{name}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        with open(folder / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
        written += [folder / f"{name}.csv", folder / f"{name}.jsonl"]
    ranked = arena_leaderboard(store)
    if ranked:  # the leaderboard as fitted now (anchor: the first model by name), and the study's checks
        (folder / "arena_leaderboard.json").write_text(json.dumps({"leaderboard": ranked, "checks": arena_checks(store)}, indent=1))
        written.append(folder / "arena_leaderboard.json")
    return written


def format_table(rows: list[dict]) -> str:
    def show(value):
        if value is None:
            return "-"
        if isinstance(value, tuple):
            return f"{value[0]}-{value[1]}"
        return str(value)

    columns = [("run", "run"), ("model", "model"), ("questions", "n"), ("strict_closed", "closed"),
               ("strict_open_recall", "open rec"), ("strict_exact", "EM"), ("llava_med_closed", "LLaVA-Med closed <#35*"),
               ("llava_med_closed_n", "counted"), ("llava_med_closed_all", "LLaVA-Med closed >=#35"),
               ("llava_med_open", "LLaVA-Med open recall"), ("lenient_closed", "lenient closed"), ("lenient_open", "lenient open"),
               ("swapped_closed", "swapped closed"), ("image_reliance", "image reliance"), ("yes_no_ece", "yes/no ECE"), ("reviewed", "reviewed"),
               ("physician_accuracy", "physician acc"), ("physician_ci95", "95% CI"),
               ("auto_wrong_physician_right", "auto wrong/MD right"), ("kappa", "kappa")]
    table = [[title for _, title in columns]] + [[show(row[key]) for key, _ in columns] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in table]
    lines.append("* LLaVA-Med run_eval.py before its fix #35: a wrong closed answer containing yes/no leaves the denominator "
                 "(\"counted\" stay); >=#35: every closed question counts. Both count \"normal\" as a \"no\".")
    lines.append("swapped closed: the same closed questions about another image; image reliance: the drop, in points.")
    return "\n".join(lines)


def format_rows(rows: list[dict]) -> str:
    """Any list of same-keyed dicts as aligned columns."""
    def show(value):
        return "-" if value is None else f"{value[0]}-{value[1]}" if isinstance(value, tuple) else str(value)

    table = [list(rows[0])] + [[show(v) for v in row.values()] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in table)


def format_tasks(rows: list[dict]) -> str:
    def show(value):
        return "-" if value is None else str(value)

    table = [["run", "model", "task", "n", "score", "measure", "yes/no balanced", "wordings", "worst", "mean", "consistent %",
              "ideal %", "dangerous %", "image reliance"]] + [
        [str(r["run"]), r["model"], r["task"], str(r["questions"]), str(r["score"]), r["measure"]]
        + [show(r[k]) for k in ("yes_no_balanced", "wordings", "worst_wording", "mean_wording", "consistency", "ideal", "dangerous",
                                "image_reliance")]
        for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in table)


def main(argv=None) -> int:
    parser = cli.Parser(PROG, __doc__)
    cli.add_db_argument(parser)
    parser.add_argument("--export", metavar="FOLDER", help="also write predictions, verdicts and arena votes as CSV and JSONL")
    parser.add_argument("--anchor", metavar="MODEL", help="the arena model scored 1000 (default: the first by name)")
    args = parser.parse_args(argv)
    return cli.run(PROG, lambda: print_report(args))


def print_report(args: argparse.Namespace) -> None:
    store = Store(args.db, readonly=True)
    rows = run_rows(store)
    if not rows:
        raise UserFacingError(f"{args.db} holds no predictions yet: run python -m medvlm.evaluate first.")
    tasks, ranked = task_rows(store), arena_leaderboard(store, args.anchor)
    print(f"\nPer model, pooled over its runs (physicians' accuracy, strict closed accuracy, image reliance in points, worst "
          f"held-out wording, arena score; 95 % intervals)\n{format_rows(headline_rows(rows, tasks, ranked))}")
    for answer_type, title in ((None, "All questions"), ("CLOSED", "Closed questions"), ("OPEN", "Open questions")):
        print(f"\n{title}\n{format_table(run_rows(store, answer_type) if answer_type else rows)}")
    if tasks:
        print(f"\nLabel questions, per task\n{format_tasks(tasks)}")
    scorers = scorer_rows(store)
    if scorers:
        print(f"\nAutomatic scorers against the physicians (kappa, 95 % interval: which metric to trust)\n{format_rows(scorers)}")
    if ranked:
        print(f"\nArena: physicians' pairwise votes (Bradley-Terry, 400-point scale, 95 % bootstrap interval; rank 1 + "
              f"the models surely above)\n{format_rows(arena_rows(ranked))}\n{arena_checks_line(arena_checks(store))}")
    comparisons = comparison_rows(store, runs=rows)
    if comparisons:
        print(f"\nVLM versus detector over a dataset (python -m medvlm.compare)\n{format_rows(comparisons)}")
    if args.export:
        for path in export(store, Path(args.export)):
            print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
