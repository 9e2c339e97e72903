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
                "dangerous": "dangerous answers %"}
TYPES = {"all": None, "closed": "CLOSED", "open": "OPEN"}
ARENA_COLUMNS = {"rank": "rank", "model": "model", "score": "score", "ci95": "95% CI", "battles": "battles", "wins": "wins",
                 "losses": "losses", "ties": "ties", "both_bad_share": "both bad share"}


SCORER_COLUMNS = {"scorer": "scorer", "questions": "questions", "graded": "graded", "scored": "scored",
                  "agreement": "agreement %", "kappa": "kappa", "kappa_ci95": "95% CI",
                  "auto_right_physician_wrong": "auto right, MD wrong", "auto_wrong_physician_right": "auto wrong, MD right"}


def scorer_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{SCORER_COLUMNS[k]: (f"{v[0]} to {v[1]}" if isinstance(v, tuple) else v) for k, v in row.items()}
                         for row in rows], columns=list(SCORER_COLUMNS.values()))


def build_evaluation_tab(store: Store, tab: gr.Tab, accounts: bool) -> None:
    notice = gr.Markdown(elem_id="eval-notice")
    with gr.Row():
        kind = gr.Radio(list(TYPES), value="all", label="Questions", elem_id="eval-type")
        anchor = gr.Dropdown([], value=None, label="Arena anchor (scored 1000; default: the first by name)", elem_id="eval-anchor")
        refresh = gr.Button("Refresh", elem_id="eval-refresh")
        export = gr.Button("Export CSV + JSONL", elem_id="eval-export")
    table = gr.Dataframe(interactive=False, wrap=True, elem_id="eval-table")
    gr.Markdown("EM: exact match; MD: physicians. \\* LLaVA-Med's run_eval.py before its fix #35: a wrong closed answer that "
                "contains yes/no leaves the denominator (\"counted\" stay); after #35 every closed question counts; both count "
                "\"normal\" as a \"no\". Its open figure is token recall. Shown so published numbers can be compared, not trusted. "
                "Swapped-image closed: the same closed questions asked about another image of the set; image reliance is "
                "the drop in points: what reading the image adds. A model that answers from the wording alone has none.")
    arena_table = gr.Dataframe(interactive=False, wrap=True, elem_id="eval-arena",
                               label="Arena: physicians' pairwise votes (Bradley-Terry, 400-point scale, 95 % bootstrap interval; "
                                     "rank: 1 + the models whose interval lies wholly above; answers that name a model left out)")
    arena_plot = gr.Image(label="Arena scores with 95 % intervals", interactive=False, height=260, elem_id="eval-arena-plot")
    scorers = gr.Dataframe(interactive=False, wrap=True, elem_id="eval-scorers",
                           label="Which automatic scorer to trust: each against the physicians' majority on the answers they graded "
                                 "(Cohen's kappa, 95 % interval)")
    tasks = gr.Dataframe(interactive=False, wrap=True, label="Label questions, per task (balanced: always yes or always no scores 50; "
                         "worst wording: the task's score in its worst held-out wording; consistent: images whose answers agree "
                         "across wordings, reversed polarity accounted for; ideal: consistent and changed by the image, "
                         "dangerous: consistent but the same without the image)", elem_id="eval-tasks")
    comparisons = gr.Dataframe(interactive=False, wrap=True, elem_id="eval-comparisons",
                               label="VLM versus detector over a dataset (python -m medvlm.compare; sens/spec/acc: tumour presence)")
    comparison_plot = gr.Image(label="Latest comparison", interactive=False, height=320, elem_id="eval-comparison-plot")
    with gr.Row():
        # One bar per (run, scorer): BarPlot stacks bars that share an x value.
        accuracy_plot = gr.BarPlot(x="bar", y="accuracy", color="scorer", title="Accuracy by scorer (automatic: closed questions)",
                                   x_title="run · scorer", x_label_angle=-30, elem_id="eval-accuracy")
        mix_plot = gr.BarPlot(x="run", y="verdicts", color="verdict", title="Verdict mix", elem_id="eval-mix")
    files = gr.File(label="Exports", file_count="multiple", interactive=False, elem_id="eval-files")

    screen = {"notice": notice, "table": table, "arena": arena_table, "arena_plot": arena_plot, "anchor": anchor,
              "scorers": scorers, "tasks": tasks, "comparisons": comparisons,
              "comparison_plot": comparison_plot, "accuracy_plot": accuracy_plot, "mix_plot": mix_plot}
    loading = bind(load, screen, store=store, accounts=accounts)
    for event in (refresh.click, kind.change, anchor.change, tab.select):  # tab.select: fresh numbers each time it opens
        loading.on(event, [kind, anchor], api_visibility="private")
    export_folder = gr.State(None)
    bind(export_all, {"files": files, "notice": notice, "export_folder": export_folder}, store=store, accounts=accounts).on(
        export.click, api_visibility="private").then(remove, [export_folder], None, api_visibility="private")


def load(store: Store, accounts: bool, choice, anchor, request: gr.Request) -> dict:
    """Every table and plot of the tab, for questions of type `choice`."""
    if not users.may_administer(store, accounts, getattr(request, "username", None)):
        empty = pd.DataFrame()
        return {"notice": "Only admins see the evaluation: it names every run's model and holds every reviewer's verdicts.",
                "table": empty, "arena": empty, "arena_plot": None, "scorers": empty, "tasks": empty, "comparisons": empty, "comparison_plot": None,
                "accuracy_plot": empty, "mix_plot": empty}
    rows = report.run_rows(store, TYPES[choice])
    frame = pd.DataFrame([{COLUMNS[k]: (f"{v[0]}-{v[1]}" if isinstance(v, tuple) else v) for k, v in row.items() if k in COLUMNS}
                          for row in rows], columns=list(COLUMNS.values()))
    accuracy = pd.DataFrame(
        [{"bar": f"{row['run']} · {scorer}", "scorer": scorer, "accuracy": row[key] or 0.0}
         for row in rows for scorer, key in (("strict closed", "strict_closed"), ("LLaVA-Med closed", "llava_med_closed"),
                                             ("lenient closed", "lenient_closed"), ("physicians (reviewed)", "physician_accuracy"))],
        columns=["bar", "scorer", "accuracy"])
    mix = pd.DataFrame([{"run": str(row["run"]), "verdict": v, "verdicts": n} for row in rows for v, n in row["verdict_mix"].items()],
                       columns=["run", "verdict", "verdicts"])
    per_task = pd.DataFrame([{TASK_COLUMNS[k]: v for k, v in row.items()} for row in report.task_rows(store)],
                            columns=list(TASK_COLUMNS.values()))
    latest = store.comparisons(1)
    notice = ""
    try:
        ranked = report.arena_leaderboard(store, anchor or None)
    except UserFacingError as e:  # an anchor with no votes (any more): the default one, and why
        notice, ranked = f"⚠️ {e}", report.arena_leaderboard(store)
    arena_frame = pd.DataFrame([{ARENA_COLUMNS.get(k, k): (f"{v[0]} to {v[1]}" if isinstance(v, list) else v) for k, v in row.items()}
                                for row in ranked], columns=list(ARENA_COLUMNS.values()))
    arena_view = {"arena": arena_frame, "arena_plot": picture_file(leaderboard.plot(ranked)) if ranked else None,
                  "anchor": gr.update(choices=sorted(r["model"] for r in ranked))}
    return {"notice": notice, "table": frame, **arena_view, "scorers": scorer_frame(report.scorer_rows(store)), "tasks": per_task,
            "comparisons": pd.DataFrame(report.comparison_rows(store, runs=rows if TYPES[choice] is None else None)),
            "comparison_plot": picture_file(latest[0]["plot"]) if latest else None,  # stored as PNG bytes
            "accuracy_plot": accuracy, "mix_plot": mix}


def export_all(store: Store, accounts: bool, request: gr.Request) -> dict:
    """Written to a private (0700) temporary folder; Gradio copies the files it serves, and the folder goes at once."""
    if not users.may_administer(store, accounts, getattr(request, "username", None)):
        return {"files": None, "notice": "Only admins may export.", "export_folder": None}
    folder = Path(tempfile.mkdtemp(prefix="medvlm-export-"))
    return {"files": [str(p) for p in report.export(store, folder)], "notice": "", "export_folder": str(folder)}


def remove(folder):
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
