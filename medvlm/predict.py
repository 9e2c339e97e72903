"""Batched answers for many (image, question) pairs: evaluation and scoring use this, chat uses medvlm.chat."""
from collections.abc import Callable

import torch

from medvlm.chat import GenerationSettings, final_answer, generate_kwargs
from medvlm.models.loading import LoadedModel

SHORT_ANSWER_INSTRUCTION = "Answer with a single word or phrase."


def with_instruction(question: str, short_answer: bool) -> str:
    """The question as the model sees it, in training and evaluation alike."""
    return f"{question}\n{SHORT_ANSWER_INSTRUCTION}" if short_answer else question


def answer_batch(
    loaded: LoadedModel,
    items: list[tuple],
    settings: GenerationSettings = GenerationSettings(max_new_tokens=32),
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy (or sampled) answers for [(image or None, question)], in order, generated batch_size at a time."""
    answers: list[str] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        inputs = loaded.family.encode_batch(loaded.processor, [([(question, None)], image) for image, question in chunk])
        with torch.inference_mode():
            output = loaded.model.generate(**generate_kwargs(loaded, inputs, settings))
        new_tokens = output[:, inputs["input_ids"].shape[1]:]  # left padding: every row's answer starts here
        for text in loaded.tokenizer.batch_decode(new_tokens, skip_special_tokens=True):
            answers.append(final_answer(text, loaded.family.stop_strings))
        if on_batch:
            on_batch(len(chunk))
    return answers
