"""How a tab wires its handlers: each handler is a module-level function of the app's objects (the model host, the
review store...) and of the event's inputs, returning (or, when it streams, yielding) {name: value} for the outputs
it changes. Tests call handlers directly, without a browser; `bind` gives Gradio a function of the inputs alone whose
updates are keyed by the tab's components.

    bind(respond, {"chatbot": chatbot, "status": status}, host=host).on(ask.click, [question, chatbot], **MODEL_EVENT)
"""
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from medvlm.settings import REMOTE_CONCURRENCY

# The one queue of events that use the shared model, in order, showing the wait. Up to REMOTE_CONCURRENCY run at once
# so a model on a server (medvlm.remote) answers several clinicians together; an in-process model still generates
# one answer at a time (ModelHost's lock), the others waiting their turn.
MODEL_QUEUE = "model"
MODEL_EVENT = {"concurrency_id": MODEL_QUEUE, "concurrency_limit": REMOTE_CONCURRENCY}  # every event in the group sets both


@dataclass(frozen=True)
class Bound:
    fn: Callable  # a function of the event's inputs, returning {component: value}
    outputs: list

    def on(self, event: Callable, inputs: list | None = None, **listener_kwargs):
        """Listen: `event` is a component's listener (button.click, textbox.submit, tab.select, demo.load...)."""
        return event(self.fn, inputs, self.outputs, **listener_kwargs)


def bind(handler: Callable, components: dict, **context) -> Bound:
    """`handler` with `context` filled in, its {name: value} updates keyed by `components` instead. Gradio reads the
    function's signature for its inputs and special arguments (gr.Request, gr.Progress)."""
    signature = inspect.signature(handler)
    unknown = set(context) - set(signature.parameters)
    if unknown:
        raise TypeError(f"{handler.__name__} takes no {', '.join(sorted(unknown))}")
    inputs = [p for name, p in signature.parameters.items() if name not in context]
    names = [p.name for p in inputs]

    def call(args, kwargs):
        return handler(**context, **dict(zip(names, args)), **kwargs)

    def keyed(update: dict) -> dict:
        if not update:  # nothing changes: Gradio would take an empty dict for one missing value and show an error
            return {component: gr.skip() for component in components.values()}
        return {components[name]: value for name, value in update.items()}

    if inspect.isgeneratorfunction(handler):  # Gradio streams only from a generator function
        @functools.wraps(handler)
        def fn(*args, **kwargs):
            for update in call(args, kwargs):
                yield keyed(update)
    else:
        @functools.wraps(handler)
        def fn(*args, **kwargs):
            return keyed(call(args, kwargs))

    del fn.__wrapped__  # Gradio must see the inputs' signature, not the handler's
    fn.__signature__ = signature.replace(parameters=inputs)
    fn.__annotations__ = {k: v for k, v in handler.__annotations__.items() if k not in context}
    return Bound(fn, list(components.values()))

