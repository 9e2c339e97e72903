"""One chat turn with a loaded model: check the question, fit the conversation in the context, stream the answer.

Generation is separate from scoring and from the UI: `stream_reply` yields the answer as it grows, and the last
value it yields is the final answer (new tokens only, cut at the family's end of turn).
"""
import reprlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from PIL import Image
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from medvlm.answers import Answer, yes_probability
from medvlm.errors import UserFacingError
from medvlm.models.families import Turn
from medvlm.models.loading import LoadedModel
from medvlm.remote import RemoteModel
from medvlm.settings import DEFAULT_MAX_NEW_TOKENS, DEFAULT_TEMPERATURE, MAX_NEW_TOKENS_LIMIT, MAX_QUESTION_CHARS

# One long-lived thread runs every generation: a fresh thread per answer costs CPU models several per cent
# (a new OpenMP team each time), and one thread also serialises use of the shared model.
_GENERATION_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medvlm-generate")


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = DEFAULT_TEMPERATURE  # 0 = greedy (reproducible)

    def check(self) -> "GenerationSettings":
        """These settings as numbers in range -> a checked copy. From the app's API they can arrive as anything (None,
        text, NaN, a list): each gets one line."""
        tokens_sent, temperature_sent = (reprlib.repr(v) for v in (self.max_new_tokens, self.temperature))  # short
        try:
            if isinstance(self.max_new_tokens, bool) or isinstance(self.temperature, bool):
                raise TypeError  # float(True) is 1.0: a checkbox's value is no setting
            tokens, temperature = float(self.max_new_tokens), float(self.temperature)
        except (TypeError, ValueError):
            raise UserFacingError(f"Temperature and max new tokens are numbers, not {temperature_sent} and {tokens_sent}.") from None
        if not 1 <= tokens <= MAX_NEW_TOKENS_LIMIT or tokens != int(tokens):  # NaN fails every comparison
            raise UserFacingError(f"Max new tokens is a whole number from 1 to {MAX_NEW_TOKENS_LIMIT}, not {tokens_sent}.")
        if not 0.0 <= temperature <= 2.0:
            raise UserFacingError(f"Temperature is a number from 0 to 2, not {temperature_sent}.")
        return GenerationSettings(max_new_tokens=int(tokens), temperature=temperature)


# Control characters other than tab and newline (NUL and friends) are dropped: they carry nothing a reader sees.
_INVISIBLE = {c: None for c in range(32) if chr(c) not in "\t\n"} | {0x7F: None}


def check_question(question: str | None) -> str:
    if question is not None and not isinstance(question, str):  # through the API a question can be any JSON value
        raise UserFacingError(f"A question is text, not {type(question).__name__}.")
    question = (question or "").translate(_INVISIBLE).strip()
    if not question:
        raise UserFacingError("Type a question first.")
    if len(question) > MAX_QUESTION_CHARS:
        raise UserFacingError(f"The question is {len(question):,} characters; the limit is {MAX_QUESTION_CHARS:,}.")
    return question


def defuse_special_tokens(text: str, tokenizer) -> str:
    """User text that spells a special token ("<image>", "<|im_end|>", "</s>") stays text: a zero-width space after
    its first character keeps the tokenizer from reading it as the token (an image slot, an end of turn)."""
    for token in sorted(set(getattr(tokenizer, "added_tokens_encoder", {})) | set(tokenizer.all_special_tokens), key=len, reverse=True):
        if len(token) > 1 and token in text:
            text = text.replace(token, token[0] + "\u200b" + token[1:])
    return text


def encode_to_fit(loaded: LoadedModel, history: list[Turn], question: str, image: Image.Image | None, max_new_tokens: int):
    """Processor inputs for history + question, dropping the oldest turns until prompt + answer fit the context.

    The image stays with the earliest turn kept. A question that does not fit even alone is refused. Special tokens
    spelt out in the questions or answers stay text.
    """
    context = loaded.family.context_length(loaded.model)
    tokenizer = loaded.tokenizer
    turns = [(defuse_special_tokens(q, tokenizer), a and defuse_special_tokens(a, tokenizer)) for q, a in list(history) + [(question, None)]]
    while True:
        inputs = loaded.family.encode(loaded.processor, turns, image)
        prompt_tokens = inputs["input_ids"].shape[1]
        if prompt_tokens + max_new_tokens <= context:
            return inputs
        if len(turns) == 1:
            raise UserFacingError(
                f"The question is too long for {loaded.spec.name}: the prompt is {prompt_tokens:,} tokens and "
                f"{max_new_tokens} are kept for the answer, but its context is {context:,} tokens. Shorten the question."
            )
        turns = turns[1:]


def generate_kwargs(loaded: LoadedModel, inputs, settings: GenerationSettings) -> dict:
    """Everything model.generate needs for this turn (inputs on the model's device and dtype included)."""
    compute_dtype = loaded.model.get_input_embeddings().weight.dtype
    tensors = {}
    for key, value in inputs.items():
        value = value.to(loaded.device)
        tensors[key] = value.to(compute_dtype) if value.is_floating_point() else value
    kwargs = dict(tensors, max_new_tokens=int(settings.max_new_tokens), **loaded.family.generate_kwargs(loaded.processor))
    if settings.temperature > 0:
        kwargs.update(do_sample=True, temperature=float(settings.temperature))
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


class _Cancelled(StoppingCriteria):
    """Stops generation when the reader goes away (the user pressed Stop or closed the page)."""

    def __init__(self):
        self.event = threading.Event()

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def stream_reply(
    loaded: LoadedModel,
    history: list[Turn],
    question: str,
    image: Image.Image | None,
    settings: GenerationSettings = GenerationSettings(),
) -> Iterator[str]:
    """Yield the answer so far as it streams; the last value is the final answer. A served model (medvlm.remote)
    streams from its server, which fits the conversation into its own context."""
    settings = settings.check()
    question = check_question(question)
    if isinstance(loaded, RemoteModel):
        yield from loaded.stream(list(history) + [(question, None)], image, settings)
        return
    inputs = encode_to_fit(loaded, history, question, image, settings.max_new_tokens)
    streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
    cancelled = _Cancelled()
    kwargs = generate_kwargs(loaded, inputs, settings)
    # The first step's logits give the answer's p_yes (medvlm.answers.yes_probability): the model's own
    # distribution, before any sampling.
    kwargs.update(streamer=streamer, stopping_criteria=StoppingCriteriaList([cancelled]), return_dict_in_generate=True, output_logits=True)

    def run():
        try:
            with torch.inference_mode():
                return loaded.model.generate(**kwargs)
        except BaseException:
            streamer.end()  # unblock the reader; future.result() below re-raises in its thread
            raise

    future = _GENERATION_THREAD.submit(run)
    stops = loaded.family.stop_strings
    text = ""
    try:
        for piece in streamer:
            text += piece
            shown = visible_prefix(text, stops)
            if shown:
                yield shown
    finally:
        cancelled.event.set()  # no-op after a normal end; stops the generation if the reader left early
        output = future.result()
    logits = getattr(output, "logits", None)
    yield Answer(final_answer(text, stops), yes_probability(logits[0][0], loaded.tokenizer) if logits else None)


def final_answer(text: str, stop_strings=()) -> str:
    """The answer without anything from an invented next turn."""
    for stop in stop_strings:
        text = text.split(stop, 1)[0]
    return text.strip()


def visible_prefix(text: str, stop_strings=()) -> str:
    """What can be shown while streaming: cut at a stop string, and hold back a tail that may become one."""
    text = final_answer(text, stop_strings) if any(s in text for s in stop_strings) else text
    for stop in stop_strings:
        for length in range(min(len(stop), len(text)), 0, -1):
            if text.endswith(stop[:length]):
                text = text[:-length]
                break
    return text.strip()
