"""The Gradio app: one module per tab (chat, compare, review, evaluation) and app.py, which assembles them. Tabs hold
layout and wiring; what a click does is a module-level handler of the host and store, testable without a browser."""
import medvlm  # noqa: F401  first: importing medvlm sets the offline switches before gradio loads
