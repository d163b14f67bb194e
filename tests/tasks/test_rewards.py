"""GRPO's rewards: each built-in scores right, wrong and malformed replies, as text or as messages,
the way TRL calls it; a recipe's own function is imported from its file, and every way it can be
wrong (file, import, name, signature, return shape) is one line naming it, before training starts."""

from __future__ import annotations

import textwrap

import pytest
from transformers import TrainerState

from finetune_kit.config.rl import RewardSpec
from finetune_kit.errors import DataError, RecipeError
from finetune_kit.tasks.rewards import builtin_reward, check_rewards, for_tasks, reply_text, user_reward

pytestmark = pytest.mark.unit


@pytest.fixture(params=[False, True], ids=["text", "messages"])
def conversational(request) -> bool:
    return request.param


def call_like_trl(reward, replies: list[str], conversational: bool, **columns) -> list:
    """The reward called as TRL's GRPOTrainer calls it, with the replies as text or as messages."""
    if conversational:
        prompts = [[{"role": "user", "content": "Say it."}] for _ in replies]
        completions = [[{"role": "assistant", "content": reply}] for reply in replies]
    else:
        prompts, completions = ["Say it."] * len(replies), list(replies)
    return reward(
        prompts=prompts,
        completions=completions,
        completion_ids=[[1, 2]] * len(replies),
        trainer_state=TrainerState(),
        log_extra=lambda column, values: None,
        log_metric=lambda name, value: None,
        **columns,
    )


def score(spec: RewardSpec, replies: list[str], references: list[str] | None, conversational: bool) -> list:
    columns = {} if references is None else {"reference": references, "task": ["t"] * len(replies)}
    return call_like_trl(builtin_reward(spec, "reference"), replies, conversational, **columns)


def test_reply_text_reads_a_string_or_the_last_message():
    assert reply_text("positive") == "positive"
    messages = [{"role": "assistant", "content": "thinking"}, {"role": "assistant", "content": "positive"}]
    assert reply_text(messages) == "positive"
    assert reply_text([]) == "" and reply_text([{"role": "assistant", "content": None}]) == ""


def test_label_match_normalises_like_accuracy(conversational):
    replies = ["Positive.", "  positive ", "negative", "", "positive, I think"]
    scores = score(RewardSpec(name="label_match"), replies, ["positive"] * 5, conversational)
    assert scores == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_bleu_and_chrf_are_sentence_scores_in_0_1(conversational):
    reference = "the cat sat on the mat today"
    replies = [reference, "the cat sat on a mat", "qqq", ""]
    for name in ("bleu", "chrf"):
        exact, close, unrelated, empty = score(RewardSpec(name=name), replies, [reference] * 4, conversational)
        assert exact == pytest.approx(1.0), name
        assert 0.1 < close < 1.0, name
        assert unrelated < 0.05 and empty == 0.0, name


def test_rouge_l_is_the_f_measure_in_0_1(conversational):
    reference = "the cat sat on the mat"
    replies = [reference, "the cat sat", "dogs run", ""]
    scores = score(RewardSpec(name="rougeL"), replies, [reference] * 4, conversational)
    assert scores == pytest.approx([1.0, 2 / 3, 0.0, 0.0])  # "the cat sat": precision 1, recall 1/2


def test_entity_f1_scores_one_reply_against_its_reference(conversational):
    replies = [
        "PER: Alice\nORG: ACME",  # both found
        "PER: Alice\nLOC: Paris",  # one right, one wrong
        "PER Alice\nORG ACME",  # no colon: no entity read
        "",
        "none",
    ]
    references = ["ORG: ACME\nPER: Alice"] * 4 + ["none"]
    scores = score(RewardSpec(name="entity_f1"), replies, references, conversational)
    assert scores == pytest.approx([1.0, 0.5, 0.0, 0.0, 1.0])  # rightly finding no entity is perfect
    assert score(RewardSpec(name="entity_f1"), ["", "PER: Bob"], ["none", "none"], conversational) == [1.0, 0.0]


def test_format_matches_the_whole_stripped_reply(conversational):
    spec = RewardSpec(name="format", pattern=r"<answer>.+</answer>")
    replies = ["  <answer>line one\nline two</answer>\n", "Sure! <answer>4</answer>", "<answer></answer>", ""]
    assert score(spec, replies, None, conversational) == [1.0, 0.0, 0.0, 0.0]  # no reference needed


def test_length_takes_the_share_of_words_past_the_limit(conversational):
    spec = RewardSpec(name="length", max_words=4)
    replies = ["one two three", "one two three four", "a b c d e f", " ".join(["w"] * 12), ""]
    assert score(spec, replies, None, conversational) == [0.0, 0.0, -0.5, -2.0, 0.0]


@pytest.mark.parametrize("name", ["label_match", "bleu", "chrf", "rougeL", "entity_f1", "format", "length"])
def test_builtins_are_logged_under_their_name(name):
    options = {"format": {"pattern": ".*"}, "length": {"max_words": 3}}.get(name, {})
    assert builtin_reward(RewardSpec(name=name, **options), "reference").__name__ == name


def test_a_reference_reward_reads_the_reference_column_it_is_given(conversational):
    reward = builtin_reward(RewardSpec(name="label_match"), "answer")
    assert call_like_trl(reward, ["yes", "no"], conversational, answer=["yes", "yes"]) == [1.0, 0.0]
    with pytest.raises(DataError) as error:
        call_like_trl(reward, ["yes"], conversational, reference=["yes"])
    message = str(error.value)
    assert "'answer' column" in message and "label_match reward" in message and "\n" not in message


def write_rewards(tmp_path, source: str, name: str = "my_rewards.py"):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


EXACT = """
    import numpy

    def exact(prompts, completions, reference, **kwargs):
        kwargs["log_metric"]("exact/step", kwargs["trainer_state"].global_step)
        scores = [int(c.strip() == r) for c, r in zip(completions, reference)]
        return scores[:-1] + [numpy.float32(0.5) if completions[-1] == "maybe" else None]
"""


def test_a_user_function_is_imported_from_its_file_and_called_like_trl(tmp_path):
    write_rewards(tmp_path, EXACT, "rewards/my_rewards.py")
    reward = user_reward(RewardSpec(function="rewards/my_rewards.py:exact"), tmp_path)
    assert reward.__name__ == "exact"
    scores = call_like_trl(reward, ["yes ", "no", "maybe"], False, reference=["yes", "yes", "x"])
    assert scores == [1.0, 0.0, 0.5] and all(type(value) is float for value in scores)
    assert call_like_trl(reward, ["yes", "skip"], False, reference=["yes", "x"]) == [1.0, None]
    absolute = user_reward(RewardSpec(function=f"{tmp_path}/rewards/my_rewards.py:exact"), tmp_path / "elsewhere")
    assert call_like_trl(absolute, ["yes", "skip"], False, reference=["yes", "x"]) == [1.0, None]


def test_a_user_file_imports_like_a_module(tmp_path):
    """Registered in sys.modules while it runs, as an import would be: dataclasses look their module up."""
    source = """
        from __future__ import annotations

        from dataclasses import dataclass

        @dataclass
        class Weights:
            exact: float = 1.0

        def exact(prompts, completions, **kwargs):
            return [Weights().exact for _ in completions]
    """
    write_rewards(tmp_path, source)
    reward = user_reward(RewardSpec(function="my_rewards.py:exact"), tmp_path)
    assert call_like_trl(reward, ["a", "b"], False) == [1.0, 1.0]


SEEN_PROMPTS = """
def seen(prompts, completions, **kwargs):
    assert set(kwargs["task"]) == {"ner"}, kwargs["task"]
    return [float(prompt == "Find the entities.") for prompt in prompts]
"""


def test_a_reward_for_some_tasks_scores_only_their_rows_and_skips_the_others(tmp_path, conversational):
    """In a mix, label_match scores the sentiment rows and a user function the NER rows, each called with
    its own rows only (the function checks it never sees another task's), the others None for TRL to skip."""
    tasks = ["sentiment", "ner", "sentiment", "ner"]
    label = for_tasks(builtin_reward(RewardSpec(name="label_match"), "reference"), ["sentiment"], "task")
    replies = ["positive", "PER: Ada", "positive", "LOC: Paris"]
    references = ["positive", "PER: Ada", "negative", "LOC: Paris"]
    scores = call_like_trl(label, replies, conversational, reference=references, task=tasks)
    assert scores == [1.0, None, 0.0, None] and label.__name__ == "label_match"

    write_rewards(tmp_path, SEEN_PROMPTS)
    seen = for_tasks(user_reward(RewardSpec(function="my_rewards.py:seen"), tmp_path), ["ner"], "task")
    rows = {"reference": references, "task": tasks, "prompts": ["Rate it."] + ["Find the entities."] * 3}
    assert seen(completions=replies, trainer_state=TrainerState(), **rows) == [None, 1.0, None, 1.0]
    assert seen(completions=replies[:1], **{key: value[:1] for key, value in rows.items()}) == [None]


def recipe_error(tmp_path, function: str, source: str | None = None) -> str:
    if source is not None:
        write_rewards(tmp_path, source)
    with pytest.raises(RecipeError) as error:
        user_reward(RewardSpec(function=function), tmp_path)
    message = str(error.value)
    assert message.startswith(f"reward function {function}: ") and "\n" not in message
    return message


def test_a_missing_file_is_named(tmp_path):
    message = recipe_error(tmp_path, "nowhere.py:exact")
    assert f"there is no file {tmp_path / 'nowhere.py'}" in message


def test_a_file_that_fails_to_import_names_the_exception(tmp_path):
    no_colon = "def exact(prompts, completions, **kwargs)\n    return []\n"
    message = recipe_error(tmp_path, "my_rewards.py:exact", no_colon)
    assert "importing" in message and "my_rewards.py failed: SyntaxError: " in message
    message = recipe_error(tmp_path, "my_rewards.py:exact", "import not_a_package_anywhere\n")
    assert "failed: ModuleNotFoundError: No module named 'not_a_package_anywhere'" in message


def test_a_missing_name_lists_the_functions_the_file_defines(tmp_path):
    source = """
        from os.path import join

        def exact_match(prompts, completions, **kwargs):
            return [1.0 for _ in completions]

        def helper(text):
            return join(text)
    """
    message = recipe_error(tmp_path, "my_rewards.py:exact", source)
    assert message.endswith("my_rewards.py defines no 'exact' (its functions: exact_match, helper)")
    assert "none)" in recipe_error(tmp_path, "my_rewards.py:exact", "THRESHOLD = 3\n")


def test_a_name_that_is_not_callable_is_refused(tmp_path):
    message = recipe_error(tmp_path, "my_rewards.py:exact", "exact = 3\n")
    assert message.endswith("'exact' is a value of type int, not a function")


def test_a_function_without_kwargs_is_refused(tmp_path):
    source = "def exact(prompts, completions, reference):\n    return [1.0 for _ in completions]\n"
    message = recipe_error(tmp_path, "my_rewards.py:exact", source)
    assert "must take **kwargs" in message and "def exact(prompts, completions, **kwargs)" in message


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        ("[1.0, 0.0, 1.0]", "returned 3 values for 4 completions; return one number per completion"),
        ("1.0", "returned a float for 4 completions; return a list with one number per completion"),
        ("[1.0, 'x', 0.0, 1.0]", "returned 'x' for completion 2; return a number (or None to skip)"),
        ("[1.0, 0.0, True, 1.0]", "returned True for completion 3; return a number (or None to skip)"),
        (  # a repr over lines is shown on one
            '[1.0, 0.0, 1.0, type("Multi", (), {"__repr__": lambda self: "line one\\nline two"})()]',
            "returned line one line two for completion 4; return a number (or None to skip)",
        ),
    ],
    ids=["count", "not-a-list", "string", "bool", "multi-line-repr"],
)
def test_a_wrong_result_is_one_data_error(tmp_path, returned, expected):
    write_rewards(tmp_path, f"def exact(prompts, completions, **kwargs):\n    return {returned}\n")
    reward = user_reward(RewardSpec(function="my_rewards.py:exact"), tmp_path)
    with pytest.raises(DataError) as error:
        call_like_trl(reward, ["a", "b", "c", "d"], False)
    assert str(error.value) == f"reward function my_rewards.py:exact {expected}"


def test_an_exception_in_the_user_function_propagates_unchanged(tmp_path):
    write_rewards(tmp_path, "def exact(prompts, completions, **kwargs):\n    return [1 / 0 for _ in completions]\n")
    reward = user_reward(RewardSpec(function="my_rewards.py:exact"), tmp_path)
    with pytest.raises(ZeroDivisionError):
        call_like_trl(reward, ["a"], False)


def test_check_rewards_probes_every_function_before_training(tmp_path):
    write_rewards(tmp_path, EXACT)
    write_rewards(tmp_path, "def short(prompts, completions, **kwargs):\n    return [1.0]\n", "bad.py")
    good = [
        builtin_reward(RewardSpec(name="label_match"), "reference"),
        user_reward(RewardSpec(function="my_rewards.py:exact"), tmp_path),
    ]
    prompts, references = ["Say yes.", "Say no."], ["yes", "no"]
    assert check_rewards(good, prompts, references, {"reference": references}) is None  # logs and state are given
    bad = user_reward(RewardSpec(function="bad.py:short"), tmp_path)
    with pytest.raises(DataError, match=r"bad\.py:short returned 1 values for 2 completions"):
        check_rewards([*good, bad], prompts, references, {"reference": references})
    with pytest.raises(DataError, match="'reference' column"):
        check_rewards(good, prompts, references, {"answer": references})
