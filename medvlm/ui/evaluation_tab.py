"""The Evaluation tab: every run's automatic scores beside the physicians' verdicts (review.report), plots, and
the export of predictions and verdicts."""
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from review import report
from review.store import Store

COLUMNS = {
    "run": "run", "model": "model", "questions": "n", "strict_closed": "closed %", "strict_open_recall": "open recall %",
    "strict_exact": "exact match %", "llava_med_closed": "LLaVA-Med closed %*", "llava_med_open": "LLaVA-Med open %*",
    "lenient_closed": "lenient closed %", "lenient_open": "lenient open %", "reviewed": "reviewed",
    "physician_accuracy": "physicians %", "physician_ci95": "95% CI", "auto_wrong_physician_right": "EM wrong, MD right",
    "auto_right_physician_wrong": "auto right, MD wrong", "kappa": "kappa", "kappa_kind": "kappa kind",
    "kappa_items": "shared",
}
TYPES = {"all": None, "closed": "CLOSED", "open": "OPEN"}


def build_evaluation_tab(store: Store, tab: gr.Tab) -> None:
    with gr.Row():
        kind = gr.Radio(list(TYPES), value="all", label="Questions", elem_id="eval-type")
        refresh = gr.Button("Refresh", elem_id="eval-refresh")
        export = gr.Button("Export CSV + JSONL", elem_id="eval-export")
    table = gr.Dataframe(interactive=False, wrap=True, elem_id="eval-table")
    gr.Markdown("EM: exact match; MD: physicians. \\* LLaVA-Med's substring rules: a wrong closed answer that contains yes/no leaves its denominator; "
                "\"normal\" counts as a \"no\". Shown so published numbers can be compared, not trusted.")
    with gr.Row():
        # One bar per (run, scorer): BarPlot stacks bars that share an x value.
        accuracy_plot = gr.BarPlot(x="bar", y="accuracy", color="scorer", title="Accuracy by scorer (automatic: closed questions)",
                                   x_title="run · scorer", x_label_angle=-30, elem_id="eval-accuracy")
        mix_plot = gr.BarPlot(x="run", y="verdicts", color="verdict", title="Verdict mix", elem_id="eval-mix")
    files = gr.File(label="Exports", file_count="multiple", interactive=False, elem_id="eval-files")

    def load(choice):
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
        return frame, accuracy, mix

    def export_all():
        folder = Path(tempfile.mkdtemp(prefix="medvlm-export-"))
        return [str(p) for p in report.export(store, folder)]

    refresh.click(load, [kind], [table, accuracy_plot, mix_plot])
    kind.change(load, [kind], [table, accuracy_plot, mix_plot])
    tab.select(load, [kind], [table, accuracy_plot, mix_plot])  # fresh numbers every time the tab is opened
    export.click(export_all, None, [files])
