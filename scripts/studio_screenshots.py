"""The studio's screenshots in the manual (docs/images/studio/), taken in headless Chromium over real runs:

    make demo demo-chat                      # runs/sst2-demo, runs/smollm2-sft-lora
    python scripts/studio_screenshots.py     # runs/ and recipes/ → docs/images/studio/*.png

Each page is opened as a person would: the runs table, the demo run, Compare, New run on the demo recipe with
its estimate made (about a minute), Chat with one question to the SFT run, and the Hub page.
"""

from __future__ import annotations

import argparse
import shutil
import threading
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from finetune_kit.studio import StudioSettings
from finetune_kit.studio.server import StudioServer

BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
QUESTION = (
    "Is the sentiment of this movie review positive or negative? Review: a warm, funny and beautifully acted film."
)


def shoot(page: Page, out: Path, name: str, full_page: bool = False) -> None:
    page.screenshot(path=str(out / f"{name}.png"), full_page=full_page)
    print(out / f"{name}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--recipes", type=Path, default=Path("recipes"))
    parser.add_argument("--run", default="sst2-demo", help="The run shown on the Run page")
    parser.add_argument("--recipe", default="sst2_demo.yaml", help="The recipe shown on the New run page")
    parser.add_argument("--chat", default="smollm2-sft-lora", help="The run asked a question on the Chat page")
    parser.add_argument("--out", type=Path, default=Path("docs/images/studio"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    settings = StudioSettings.create([args.runs], [args.recipes], port=0)
    server = StudioServer(settings)
    threading.Thread(target=server.run, daemon=True).start()
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=args.chromium, args=BROWSER_ARGS)
        page = browser.new_page(
            viewport={"width": 1280, "height": 860}, base_url=f"http://127.0.0.1:{server.settings.port}"
        )
        page.goto("/")
        page.locator("tr[data-run-id]").first.wait_for()
        shoot(page, args.out, "runs")
        page.goto(f"/run?id=0/{args.run}")
        page.locator("#chart-loss svg[data-points]").wait_for()
        shoot(page, args.out, "run", full_page=True)
        page.goto("/compare")
        page.locator("#chart-pareto svg[data-points]").wait_for()
        shoot(page, args.out, "compare")
        page.goto(f"/new?recipe=0/{args.recipe}")
        page.wait_for_load_state("networkidle")  # the form is built from the recipe once its fetch returns
        page.fill('[data-field="output_dir"]', f"runs/{args.run}-lr-5e-5")  # the recipe's own run exists
        page.fill('[data-field="training.learning_rate"]', "5e-5")
        page.click("#estimate-button")
        page.locator("#estimate-result[data-status=done], .field-error:visible").first.wait_for(timeout=600_000)
        if page.locator(".field-error:visible").count():
            raise SystemExit(f"New run: {page.locator('.field-error:visible').first.text_content()}")
        shoot(page, args.out, "new-run")
        page.goto(f"/chat?model=0/{args.chat}")
        page.fill("#chat-input", QUESTION)
        page.click("#chat-send")
        page.locator("#chat-log .message.assistant[data-done=true]").wait_for(timeout=300_000)
        shoot(page, args.out, "chat")
        page.goto("/hub")
        page.locator("#hub-token-status").wait_for()
        shoot(page, args.out, "hub")
        browser.close()
    server.stop()


if __name__ == "__main__":
    main()
