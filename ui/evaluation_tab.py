"""The Evaluation tab: every run's automatic scores beside the physicians' verdicts (review.report), plots, and
the export of predictions and verdicts. With accounts, only admins see it: it names every run's model and holds
every reviewer's verdicts and notes."""
import shutil
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from medvlm import leaderboard
from medvlm.errors import UserFacingError
from medvlm.store import Store
from review import report, users
from ui.events import bind
from ui.pictures import picture_file
from ui.text import warning

COLUMNS = {
    "run": "run", "model": "model", "questions": "n", "strict_closed": "closed %", "strict_open_recall": "open recall %",
    "strict_exact": "exact match %", "llava_med_closed": "LLaVA-Med closed % (before #35)*",
    "llava_med_closed_n": "counted*", "llava_med_closed_all": "LLaVA-Med closed % (after #35)", "llava_med_open": "LLaVA-Med open recall %",
    "lenient_closed": "lenient closed %", "lenient_open": "lenient open %", "swapped_closed": "swapped-image closed %",
    "image_reliance": "image reliance (points)", "yes_no_ece": "yes/no calibration error", "reviewed": "reviewed",
    "physician_accuracy": "physicians %", "physician_ci95": "95% CI", "auto_wrong_physician_right": "EM wrong, MD right",
    "auto_right_physician_wrong": "auto right, MD wrong", "kappa": "kappa", "kappa_kind": "kappa kind",
    "kappa_items": "shared",
}
TASK_COLUMNS = {"run": "run", "model": "model", "task": "task", "questions": "n", "score": "score %", "measure": "measure",
                "yes_no_balanced": "yes/no balanced %", "wordings": "wordings", "worst_wording": "worst wording %",
                "mean_wording": "mean wording %", "consistency": "consistent across wordings %", "ideal": "ideal answers %",
                "dangerous": "dangerous answers %", "image_reliance": "image reliance (own - swapped)"}
TYPES = {"all": None, "closed": "CLOSED", "open": "OPEN"}
ARENA_COLUMNS = {"rank": "rank", "model": "model", "score": "score", "ci95": "95% CI", "battles": "battles", "wins": "wins",
                 "losses": "losses", "ties": "ties", "both_bad_share": "both bad share"}


SCORER_COLUMNS = {"scorer": "scorer", "questions": "questions", "graded": "graded", "scored": "scored",
                  "agreement": "agreement %", "kappa": "kappa", "kappa_ci95": "95% CI",
                  "auto_right_physician_wrong": "auto right, MD wrong", "auto_wrong_physician_right": "auto wrong, MD right"}


HEADLINE_COLUMNS = {"model": "model", "answers": "answers", "reviewed": "reviewed", "physicians": "physicians % (95% CI)",
                    "strict_closed": "strict closed %", "image_reliance": "image reliance", "worst_wording": "worst wording %",
                    "arena": "arena (95% CI)"}
# What to run when a section has nothing to show yet.
NOTHING_YET = {
    "headline": "Nothing yet: run `python -m medvlm.evaluate --model medvlm-tiny --data ../shared/data/vqa-rad/vqa_rad.jsonl "
                "--split test --db medvlm.db`, then grade answers in the Review tab.",
    "arena": "Nothing yet: an admin enters runs in the Arena tab, and physicians vote there.",
    "table": "Nothing yet: run `python -m medvlm.evaluate ... --db medvlm.db`.",
    "scorers": "Nothing yet: physicians grade answers in the Review tab; each scorer is then measured against them.",
    "tasks": "Nothing yet: run `python -m medvlm.evaluate --model medvlm-tiny --data labels:../shared/data/brain-tumor/data.yaml "
             "--split val --db medvlm.db`.",
    "comparisons": "Nothing yet: run `python -m medvlm.compare --data ../shared/data/brain-tumor/data.yaml --split val "
                   "--db medvlm.db`.",
}


def headline_frame(rows: list[dict]) -> pd.DataFrame:
    """report.headline_rows with each interval beside its figure, in whole points, so the table fits the page."""
    def with_interval(value, interval):
        if value is None:
            return None
        return f"{value:.0f} ({interval[0]:.0f}–{interval[1]:.0f})"

    return frame_of([row | {"physicians": with_interval(row["physician_accuracy"], row["physician_ci95"]),
                            "arena": with_interval(row["arena_score"], row["arena_ci95"])} for row in rows], HEADLINE_COLUMNS)


def frame_of(rows: list[dict], columns: dict) -> pd.DataFrame:
    """Report rows as a table with readable headers; intervals as "low to high"."""
    return pd.DataFrame([{columns[k]: (f"{v[0]} to {v[1]}" if isinstance(v, (tuple, list)) else v) for k, v in row.items() if k in columns}
                         for row in rows], columns=list(columns.values()))


def build_evaluation_tab(store: Store, tab: gr.Tab, accounts: bool) -> None:
    notice = gr.Markdown(elem_id="eval-notice")
    with gr.Row():
        kind = gr.Radio(list(TYPES), value="all", label="Questions", elem_id="eval-type")
        anchor = gr.Dropdown([], value=None, label="Arena anchor (scored 1000; default: the first by name)", elem_id="eval-anchor")
        refresh = gr.Button("Refresh", elem_id="eval-refresh")
        export = gr.Button("Export CSV + JSONL", elem_id="eval-export")
    gr.Markdown("### Per model\nPooled over each model's runs. Physicians: answers most of their reviewers graded correct or "
                "rephrased. Strict closed: exact yes/no. Image reliance: points lost when the same closed questions are asked "
                "about another image (a model that reads no image has none). Worst wording: its label tasks in their worst "
                "held-out wording. Arena: Bradley-Terry score from physicians' pairwise votes.")
    empty = {}  # each section's "nothing yet" line, in its place

    def nothing_yet(key):
        empty[key] = gr.Markdown(visible=False, elem_id=f"eval-{key}-empty")

    nothing_yet("headline")
    headline = gr.Dataframe(interactive=False, elem_id="eval-headline")
    with gr.Accordion("Arena leaderboard", open=True):
        gr.Markdown("Bradley-Terry, 400-point scale, 95 % bootstrap interval; rank: 1 + the models whose interval lies wholly "
                    "above; answers that name a model are left out.")
        nothing_yet("arena")
        arena_table = gr.Dataframe(interactive=False, elem_id="eval-arena")
        arena_checks = gr.Markdown(visible=False, elem_id="eval-arena-checks")  # figures only: no user or model text
        arena_plot = gr.Image(label="Arena scores with 95 % intervals", interactive=False, height=260, visible=False, elem_id="eval-arena-plot")
    with gr.Accordion("Scores per run, every scorer", open=False):
        nothing_yet("table")
        table = gr.Dataframe(interactive=False, elem_id="eval-table")
        gr.Markdown("EM: exact match; MD: physicians. \\* LLaVA-Med's run_eval.py before its fix #35: a wrong closed answer that "
                    "contains yes/no leaves the denominator (\"counted\" stay); after #35 every closed question counts; both count "
                    "\"normal\" as a \"no\". Its open figure is token recall. Shown so published numbers can be compared, not trusted. "
                    "Swapped-image closed: the same closed questions asked about another image of the set; image reliance is "
                    "the drop in points.")
        with gr.Row():
            # One bar per (run, scorer): BarPlot stacks bars that share an x value.
            accuracy_plot = gr.BarPlot(x="bar", y="accuracy", color="scorer", title="Accuracy by scorer (automatic: closed questions)",
                                       x_title="run · scorer", x_label_angle=-30, visible=False, elem_id="eval-accuracy")
            mix_plot = gr.BarPlot(x="run", y="verdicts", color="verdict", title="Verdict mix", visible=False, elem_id="eval-mix")
    with gr.Accordion("Which automatic scorer to trust", open=False):
        gr.Markdown("Each scorer against the physicians' majority on the answers they graded (Cohen's kappa, 95 % interval).")
        nothing_yet("scorers")
        scorers = gr.Dataframe(interactive=False, elem_id="eval-scorers")
    with gr.Accordion("Label questions, per task", open=False):
        gr.Markdown("Balanced: always yes or always no scores 50. Worst wording: the task's score in its worst held-out wording. "
                    "Consistent: images whose answers agree across wordings, reversed polarity accounted for. Ideal: consistent "
                    "and changed by the image; dangerous: consistent but the same without the image.")
        nothing_yet("tasks")
        tasks = gr.Dataframe(interactive=False, elem_id="eval-tasks")
    with gr.Accordion("VLM versus detector", open=False):
        gr.Markdown("python -m medvlm.compare over a labelled set; sens / spec / acc: tumour presence.")
        nothing_yet("comparisons")
        comparisons = gr.Dataframe(interactive=False, elem_id="eval-comparisons")
        comparison_plot = gr.Image(label="Latest comparison", interactive=False, height=320, visible=False, elem_id="eval-comparison-plot")
    files = gr.File(label="Exports", file_count="multiple", interactive=False, visible=False, elem_id="eval-files")

    screen = {"notice": notice, "headline": headline, "table": table, "arena": arena_table, "arena_plot": arena_plot, "anchor": anchor,
              "arena_checks": arena_checks,
              "scorers": scorers, "tasks": tasks, "comparisons": comparisons, "comparison_plot": comparison_plot,
              "accuracy_plot": accuracy_plot, "mix_plot": mix_plot} | {f"{key}_empty": box for key, box in empty.items()}
    loading = bind(load, screen, store=store, accounts=accounts)
    for event in (refresh.click, kind.change, anchor.change, tab.select):  # tab.select: fresh numbers each time it opens
        loading.on(event, [kind, anchor], api_visibility="private")
    export_folder = gr.State(None)
    bind(export_all, {"files": files, "notice": notice, "export_folder": export_folder}, store=store, accounts=accounts).on(
        export.click, api_visibility="private").then(remove, [export_folder], None, api_visibility="private")


def sections(tables: dict[str, pd.DataFrame]) -> dict:
    """Each table shown when it has rows; otherwise hidden, and its "nothing yet" line in its place."""
    out = {}
    for key, frame in tables.items():
        out[key] = gr.update(value=frame, visible=not frame.empty)
        out[f"{key}_empty"] = gr.update(value=NOTHING_YET[key], visible=frame.empty)
    return out


def picture(value, visible: bool) -> dict:
    return gr.update(value=value if visible else None, visible=visible)


def load(store: Store, accounts: bool, choice, anchor, request: gr.Request) -> dict:
    """Every table and plot of the tab, for questions of type `choice`."""
    if not users.may_administer(store, accounts, getattr(request, "username", None)):
        hidden = gr.update(value=None, visible=False)
        return {"notice": "Only admins see the evaluation: it names every run's model and holds every reviewer's verdicts.",
                **{key: hidden for key in ("headline", "table", "arena", "arena_plot", "arena_checks", "scorers", "tasks", "comparisons",
                                           "comparison_plot", "accuracy_plot", "mix_plot")},
                **{f"{key}_empty": gr.update(visible=False) for key in NOTHING_YET}}
    rows = report.run_rows(store, TYPES[choice])
    accuracy = pd.DataFrame(
        [{"bar": f"{row['run']} · {scorer}", "scorer": scorer, "accuracy": row[key]}
         for row in rows for scorer, key in (("strict closed", "strict_closed"), ("LLaVA-Med closed", "llava_med_closed"),
                                             ("lenient closed", "lenient_closed"), ("physicians (reviewed)", "physician_accuracy"))
         if row[key] is not None],  # no bar rather than a zero one where a scorer has nothing to score
        columns=["bar", "scorer", "accuracy"])
    mix = pd.DataFrame([{"run": str(row["run"]), "verdict": v, "verdicts": n} for row in rows for v, n in row["verdict_mix"].items()],
                       columns=["run", "verdict", "verdicts"])
    task_list = report.task_rows(store)
    latest = store.comparisons(1)
    notice = ""
    try:
        ranked = report.arena_leaderboard(store, anchor or None)
    except UserFacingError as e:  # an anchor with no votes (any more): the default one, and why
        notice, ranked = warning(str(e)), report.arena_leaderboard(store)
    tables = {"headline": headline_frame(report.headline_rows(rows, task_list, ranked)),
              "arena": frame_of(ranked, ARENA_COLUMNS), "table": frame_of(rows, COLUMNS),
              "scorers": frame_of(report.scorer_rows(store), SCORER_COLUMNS), "tasks": frame_of(task_list, TASK_COLUMNS),
              "comparisons": pd.DataFrame(report.comparison_rows(store, runs=rows if TYPES[choice] is None else None))}
    return {"notice": notice, **sections(tables),
            "arena_plot": picture(picture_file(leaderboard.plot(ranked)) if ranked else None, bool(ranked)),
            "anchor": gr.update(choices=sorted(r["model"] for r in ranked)),
            "arena_checks": gr.update(value=f"**Checks.** {report.arena_checks_line(report.arena_checks(store))}" if ranked else "",
                                      visible=bool(ranked)),
            "comparison_plot": picture(picture_file(latest[0]["plot"]) if latest else None, bool(latest)),  # stored as PNG bytes
            "accuracy_plot": gr.update(value=accuracy, visible=not accuracy.empty), "mix_plot": gr.update(value=mix, visible=not mix.empty)}


def export_all(store: Store, accounts: bool, request: gr.Request) -> dict:
    """Written to a private (0700) temporary folder; Gradio copies the files it serves, and the folder goes at once."""
    if not users.may_administer(store, accounts, getattr(request, "username", None)):
        return {"files": None, "notice": "Only admins may export.", "export_folder": None}
    folder = Path(tempfile.mkdtemp(prefix="medvlm-export-"))
    return {"files": gr.update(value=[str(p) for p in report.export(store, folder)], visible=True), "notice": "", "export_folder": str(folder)}


def remove(folder):
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
