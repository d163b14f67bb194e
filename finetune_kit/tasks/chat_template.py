"""Chat templates: which one a run uses, where each assistant reply sits in the rendered text (the
tokens the loss is taken on), and the token that ends a reply (where generation stops).

Works from the rendered text alone, so any template that renders a conversation's beginning the
same way whether or not more turns follow (every common template does) can be trained on: no
`{% generation %}` markers are needed.
"""

from __future__ import annotations

from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase

from finetune_kit.config.chat import TrainOn
from finetune_kit.errors import RecipeError, first_line
from finetune_kit.tasks.common import IGNORE_INDEX

Message = dict[str, str]

# ChatML (the Qwen / SmolLM format), without a default system prompt: for base models with no template.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")
_PROBE = [{"role": "user", "content": "Hello?"}, {"role": "assistant", "content": "Hi."}]


def attach_template(tokenizer: PreTrainedTokenizerBase, template: str | None) -> None:
    """Give the tokenizer the recipe's template (`chatml`, or Jinja text), or check it has its own.
    Saved with the tokenizer, so `chat` and `generate` format prompts exactly as training did."""
    if template == "chatml":
        missing = [token for token in CHATML_TOKENS if token not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_tokens(missing, special_tokens=True)  # the model's embeddings grow to match
        tokenizer.chat_template = CHATML
    elif template is not None:
        tokenizer.chat_template = template
    elif not tokenizer.chat_template:
        raise RecipeError(
            "chat.template: the checkpoint's tokenizer has no chat template (a base model?); "
            "set chat.template: chatml, or give a Jinja template"
        )
    try:
        render(tokenizer, _PROBE)
    except TemplateError as err:
        raise RecipeError(f"chat.template: the template does not render: {first_line(err)}") from None
    end_of_turn(tokenizer)


def render(tokenizer: PreTrainedTokenizerBase, messages: list[Message], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def end_of_turn(tokenizer: PreTrainedTokenizerBase) -> str:
    """The special token the template writes right after a reply (`<|im_end|>`, `</s>`, ...): the
    token a model must learn to produce to stop."""
    text = render(tokenizer, _PROBE)
    after = text[text.rindex(_PROBE[-1]["content"]) + len(_PROBE[-1]["content"]) :]
    specials = {
        *tokenizer.all_special_tokens,
        *(t.content for t in tokenizer.added_tokens_decoder.values() if t.special),
    }
    special = [t for t in specials if t and after.startswith(t, len(after) - len(after.lstrip()))]
    if not special:
        raise RecipeError(
            f"chat.template: replies are not ended by a special token (they end with {after[:20]!r}); "
            "without one a model cannot learn to stop: end assistant turns with the tokenizer's eos token"
        )
    return max(special, key=len)


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Generation ends at the end of the reply, or at the end of the text."""
    ids = [tokenizer.convert_tokens_to_ids(end_of_turn(tokenizer)), tokenizer.eos_token_id]
    return list(dict.fromkeys(i for i in ids if i is not None))


def assistant_spans(tokenizer: PreTrainedTokenizerBase, messages: list[Message]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant reply, its end-of-turn
    token included. A reply's span starts where the same conversation, cut before it and rendered
    with the generation prompt, ends."""
    text, end_token, spans = render(tokenizer, messages), end_of_turn(tokenizer), []
    for turn, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:turn], generation_prompt=True)
        through = render(tokenizer, messages[: turn + 1])
        if not (text.startswith(through) and through.startswith(before)):
            raise RecipeError(
                "chat.template: the template renders a conversation's beginning differently once more turns "
                "follow, so replies cannot be located; use a template that keeps earlier turns as they were"
            )
        end = through.rfind(end_token, len(before))
        spans.append((len(before), end + len(end_token) if end >= 0 else len(through)))
    return text, spans


def encode_conversation(
    tokenizer: PreTrainedTokenizerBase, messages: list[Message], train_on: TrainOn, max_length: int
) -> tuple[list[int], list[int], bool]:
    """Token ids, labels (IGNORE_INDEX outside the replies unless `train_on` is all), and whether
    the conversation was cut at `max_length`."""
    text, spans = assistant_spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"]
    if train_on == "all":
        labels = list(ids)
    else:
        labels = [
            token if any(start <= offset < end for start, end in spans) else IGNORE_INDEX
            for token, (offset, _) in zip(ids, encoded["offset_mapping"], strict=True)
        ]
    return ids[:max_length], labels[:max_length], len(ids) > max_length


def prompt_text(tokenizer: PreTrainedTokenizerBase, messages: list[Message]) -> str:
    """The conversation so far, ready for the model's reply."""
    return render(tokenizer, messages, generation_prompt=True)
