"""The Evaluation tab: every run's automatic scores beside the physicians' verdicts (review.report), plots, and
the export of predictions and verdicts."""
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from review import report
from review.store import Store

COLUMNS = {
    "run": "run", "model": "model", "questions": "questions", "strict_closed": "strict closed %",
    "strict_open_recall": "strict open recall %", "strict_exact": "exact match %",
    "llava_med_closed": "LLaVA-Med-compatible closed %*", "llava_med_open": "LLaVA-Med-compatible open %*",
    "lenient_closed": "lenient closed %", "lenient_open": "lenient open %", "reviewed": "reviewed",
    "physician_accuracy": "physician accuracy %", "physician_ci95": "95% interval",
    "auto_wrong_physician_right": "exact-match wrong, physicians right", "auto_right_physician_wrong": "auto right, physicians wrong",
    "kappa": "kappa", "kappa_kind": "kappa kind", "kappa_items": "shared items",
}
TYPES = {"all": None, "closed": "CLOSED", "open": "OPEN"}


def build_evaluation_tab(store: Store, tab: gr.Tab) -> None:
    with gr.Row():
        kind = gr.Radio(list(TYPES), value="all", label="Questions", elem_id="eval-type")
        refresh = gr.Button("Refresh", elem_id="eval-refresh")
        export = gr.Button("Export CSV + JSONL", elem_id="eval-export")
    table = gr.Dataframe(interactive=False, wrap=True, elem_id="eval-table")
    gr.Markdown("\\* LLaVA-Med's substring rules: a wrong closed answer that contains yes/no leaves its denominator; "
                "\"normal\" counts as a \"no\". Shown so published numbers can be compared, not trusted.")
    with gr.Row():
        accuracy_plot = gr.BarPlot(x="run", y="accuracy", color="scorer", title="Accuracy by scorer", elem_id="eval-accuracy")
        mix_plot = gr.BarPlot(x="run", y="verdicts", color="verdict", title="Verdict mix", elem_id="eval-mix")
    files = gr.File(label="Exports", file_count="multiple", interactive=False, elem_id="eval-files")

    def load(choice):
        rows = report.run_rows(store, TYPES[choice])
        frame = pd.DataFrame([{COLUMNS[k]: (f"{v[0]}-{v[1]}" if isinstance(v, tuple) else v) for k, v in row.items() if k in COLUMNS}
                              for row in rows], columns=list(COLUMNS.values()))
        accuracy = pd.DataFrame(
            [{"run": str(row["run"]), "scorer": scorer, "accuracy": row[key] or 0.0}
             for row in rows for scorer, key in (("strict closed", "strict_closed"), ("LLaVA-Med closed", "llava_med_closed"),
                                                 ("lenient closed", "lenient_closed"), ("physicians", "physician_accuracy"))],
            columns=["run", "scorer", "accuracy"])
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
