"""The studio in a real headless browser (Debian's Chromium driven by Playwright): a recipe launched from the
form, its curve moving live, the finished run in the table with its grams, Compare, and Chat."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from finetune_kit.studio import StudioSettings
from finetune_kit.studio.server import StudioServer
from tests.builders import classification_recipe, sft_recipe, toy_sentiment_rows, train_run, write_jsonl

playwright = pytest.importorskip("playwright.sync_api", reason="the studio's browser test needs playwright")
CHROMIUM = os.environ.get("FINETUNE_KIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "no Chromium on PATH (Debian: apt install chromium): the studio's browser test cannot run",
        allow_module_level=True,
    )
# Flags for a closed network: no background connections, no sandbox (CI runs as root).
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = os.environ.get("FINETUNE_KIT_STUDIO_SCREENSHOTS")  # a folder: the docs' screenshots are taken here


@pytest.fixture(scope="module")
def studio_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("studio-browser") / "runs"


@pytest.fixture(scope="module")
def studio(tiny_bert: Path, tiny_chat_llama: Path, studio_runs: Path) -> Iterator[str]:
    """A studio over a runs folder holding a finished chat run, and a recipes folder with a toy recipe."""
    work = studio_runs.parent
    runs, recipes = studio_runs, work / "recipes"
    recipes.mkdir()
    data = {
        "train": write_jsonl(recipes / "data" / "train.jsonl", toy_sentiment_rows(1200, seed=1)),
        "validation": write_jsonl(recipes / "data" / "validation.jsonl", toy_sentiment_rows(80, seed=2)),
    }
    recipe = classification_recipe(tiny_bert, data, Path("runs/toy-sentiment"), epochs=4, logging_steps=4)
    recipe["name"] = "toy-sentiment"
    (recipes / "toy.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    train_run(sft_recipe(tiny_chat_llama, work / "chat-data", runs / "toy-chat", name="toy-chat"), work)
    server = StudioServer(StudioSettings.create([runs], [recipes], port=0))
    threading.Thread(target=server.run, daemon=True).start()
    yield f"http://127.0.0.1:{server.settings.port}"
    server.stop()


@pytest.fixture(scope="module")
def page(studio: str):
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, base_url=studio)
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        yield page
        browser.close()
        assert not errors, f"JavaScript errors: {errors}"


def shoot(page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def points(page, selector: str) -> int:
    return int(page.locator(f"{selector} svg").first.get_attribute("data-points") or 0)


def field_error(page, field: str) -> str:
    error = page.locator(f'.field-error[data-error-for="{field}"]')
    error.wait_for()
    return error.text_content()


def test_launch_watch_compare_and_chat(page, studio: str, studio_runs: Path) -> None:
    page.goto("/new?recipe=0/toy.yaml")
    rate = page.locator('[data-field="training.learning_rate"]')
    rate.fill("fast")  # a wrong type
    page.click("#validate-button")
    assert "training.learning_rate" in field_error(page, "training.learning_rate")
    rate.fill("0.003")
    train = page.locator('[data-field="data.train"]')
    kept = train.input_value()
    train.fill("data/missing.jsonl")  # a data file that is not there
    page.click("#start-button")
    assert "data.train" in field_error(page, "data.train") and "missing.jsonl" in field_error(page, "data.train")
    train.fill(kept)
    page.fill("#extra-overrides", "training.learning_rat=0.1")  # an unknown field
    page.click("#start-button")
    page.locator("#form-error", has_text="learning_rat").wait_for()
    assert "did you mean" in page.locator("#form-error").text_content()
    assert not list(studio_runs.glob("toy-sentiment*"))  # none of them started anything
    page.fill("#extra-overrides", "")

    page.click("#estimate-button")
    page.locator("#estimate-result").filter(has_text="CO2").wait_for(timeout=120_000)
    shoot(page, "new-run")

    page.click("#start-button")
    page.wait_for_url("**/run?id=0/toy-sentiment", timeout=30_000)
    page.locator("#chart-loss svg[data-points]").first.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => Number(document.querySelector('#chart-loss svg').dataset.points) >= 2", timeout=60_000
    )
    first = points(page, "#chart-loss")
    page.wait_for_function(
        f"() => Number(document.querySelector('#chart-loss svg').dataset.points) > {first}", timeout=60_000
    )  # the curve moves while the run trains, without a reload
    page.locator(".status", has_text="finished").first.wait_for(timeout=180_000)
    shoot(page, "run")

    page.goto("/")
    row = page.locator('tr[data-run-id="0/toy-sentiment"]')
    row.wait_for()
    assert "finished" in row.text_content()
    assert any(ch.isdigit() for ch in row.locator("[data-col=emissions_g], .emissions").first.text_content())
    shoot(page, "runs")

    page.goto("/compare")
    page.wait_for_function("() => Number(document.querySelector('#chart-pareto svg')?.dataset.points) >= 2")
    shoot(page, "compare")

    page.goto("/chat?model=0/toy-chat")
    page.fill("#chat-input", "Sentiment of: the film was great")
    page.click("#chat-send")
    page.locator("#chat-log .assistant, #chat-log [data-role=assistant]").last.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#chat-log [data-role=assistant], #chat-log .assistant')]"
        ".some(e => e.textContent.trim().length > 0)",
        timeout=60_000,
    )
    shoot(page, "chat")

    page.goto("/hub")
    page.locator("#hub-token-status").wait_for()
    shoot(page, "hub")
