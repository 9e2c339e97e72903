"""`python app.py --model FOLDER` on tiny Gemma 3, Idefics3 and Qwen2.5-VL checkpoints in headless Chromium, and each
session its own model. Its own file so that pytest-xdist runs it beside test_browser.py, not after it."""
import html
import time

import pytest
from test_browser import (  # noqa: F401  trap and browser are this module's fixtures too
    ask_and_watch,
    browser,
    launch_app,
    new_page,
    pytestmark,
    status,
    trap,
    upload,
    wait_for_status,
    wait_text,
    wait_until_up,
)

HOSTILE_FOLDER_NAME = 'gemma3 <img src=x onerror=alert(1)> ![t](http:10.9.9.9) [l](http:10.9.9.9) **b** `c`'


@pytest.fixture(scope="module")
def chat_template_apps(trap, tmp_path_factory):  # noqa: F811
    """`python app.py --model FOLDER` for a tiny Gemma 3, Idefics3 and Qwen2.5-VL folder, the three started at once."""
    from tiny_models import CHAT_TEMPLATE_MODELS

    # The Gemma 3 folder's name is markup: the model panel and status line must show it as typed.
    names = {"gemma3": HOSTILE_FOLDER_NAME}
    folders = {kind: save(tmp_path_factory.mktemp(names.get(kind, kind))) for kind, save in CHAT_TEMPLATE_MODELS.items()}
    launched = {kind: launch_app(trap, tmp_path_factory, "--model", str(folder), "--db", str(tmp_path_factory.mktemp("db") / "m.db"))
                for kind, folder in folders.items()}
    yield {kind: (folders[kind], *wait_until_up(*started)) for kind, started in launched.items()}
    for process, _, _ in launched.values():
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize("kind", ["gemma3", "idefics3", "qwen2_5_vl"])
def test_a_chat_template_checkpoint_chats_in_the_browser(kind, chat_template_apps, trap, browser, vqa_rad_image):  # noqa: F811
    """`python app.py --model FOLDER` on a tiny local Gemma 3 / Idefics3 / Qwen2.5-VL checkpoint: upload, ask, a
    streamed answer, a follow-up; nothing leaves the machine."""
    folder, _, url, _ = chat_template_apps[kind]
    page = new_page(browser)
    page.goto(url)
    page.wait_for_selector("#question textarea")
    upload(page, vqa_rad_image)
    wait_for_status(page, "Loaded synpic54610.jpg")
    first = ask_and_watch(page, "Is there a fracture?")
    second = ask_and_watch(page, "Where is it?")
    assert first and second and page.locator('[data-testid="bot"]').count() == 2
    assert "rror" not in status(page), status(page)
    if kind == "gemma3":  # a folder named in markup: shown as typed, drawing nothing
        panel = page.locator("#model-info")
        assert str(folder) in panel.inner_text() and panel.locator("img, a, code").count() == 0
        assert any(f"{folder} is answering" in text for text in page.evaluate("window.__watch.status"))
    if kind == "qwen2_5_vl":  # pool rules saved (Save clicked twice fast); a second session sees them and picks another model
        page.get_by_text("Model pool (admins)").click()
        page.locator("#pinned").get_by_label(str(folder)).check()
        page.locator("#reviewer-models").get_by_label("medvlm-tiny", exact=True).uncheck()
        page.locator("#save-pool-rules").dblclick()
        wait_for_status(page, "Pinned")
        other = new_page(browser)
        other.goto(url)
        other.wait_for_selector("#question textarea")
        other.get_by_text("Model pool (admins)").click()
        assert other.locator("#pinned").get_by_label(str(folder)).is_checked()
        assert not other.locator("#reviewer-models").get_by_label("medvlm-tiny", exact=True).is_checked()
        other.locator("#model input").click()
        other.get_by_role("option", name="midefics (unavailable here)").click()  # refused: the picker goes back, no error
        wait_for_status(other, "not in the local Hugging Face cache")
        other.wait_for_function("() => document.querySelector('#model input').value.includes('qwen2_5_vl')")
        other.locator("#model input").click()
        other.get_by_role("option", name="medvlm-tiny (can load, admins only)").click()  # no accounts: everyone is admin
        wait_for_status(other, "Switched to medvlm-tiny", timeout=120_000)
        ask_and_watch(other, "Is there a fracture?")
        ask_and_watch(page, "Is it displaced?")
        assert any("medvlm-tiny is answering" in text for text in other.evaluate("window.__watch.status"))
        assert any(f"{folder} is answering" in text.replace("\\", "") for text in page.evaluate("window.__watch.status"))
        assert "medvlm-tiny" in other.locator("#model-info").inner_text()
        assert str(folder) in page.locator("#model-info").inner_text().replace("\\", "")
        assert other.get_by_text("Error", exact=True).count() == 0 and page.get_by_text("Error", exact=True).count() == 0
        other.close()
    assert trap.connections == 0
    page.close()


def test_a_live_battle_streams_two_unnamed_models_side_by_side_then_names_them(chat_template_apps, browser, vqa_rad_image):  # noqa: F811
    """The Arena's live battle on `python app.py --model FOLDER` (a tiny Gemma 3 in a folder named in markup) beside
    MedVLM-Tiny: upload, ask, both answer side by side, a follow-up to both; no model name on the page or in any API
    payload before the vote; key 1 votes and both are named, as text (no accounts here: nothing stored, and it says so)."""
    from gradio_client import Client, handle_file

    folder, _, url, _ = chat_template_apps["gemma3"]
    names = (str(folder), "medvlm-tiny")
    client = Client(url, verbose=False)  # over the wire: every output of every event before the vote
    payloads = [client.predict(handle_file(str(vqa_rad_image)), api_name="/battle_upload")]
    asked = client.submit("Is there a fracture?", api_name="/battle_ask")
    payloads += [*asked, asked.result()]
    assert "Which answer is better" in str(payloads[-1])
    assert not any(name in str(payloads) for name in names), payloads
    token = payloads[1][-2]  # the first answer's update names the battle (the hidden token a vote carries)
    assert "read both answers first" in client.predict(token, "", api_name="/battle_vote_a")  # no faster than a reader
    time.sleep(0.5)
    revealed = client.predict(token, "", api_name="/battle_vote_a")
    assert all(name in html.unescape(revealed.replace("\\", "")) for name in names), revealed  # Markdown, escaped: as typed

    page = new_page(browser)
    page.goto(url)
    page.wait_for_selector("#question textarea")
    page.get_by_role("tab", name="Arena").click()
    page.get_by_role("tab", name="Live battle").click()
    page.locator("#battle-upload input[type=file]").set_input_files(str(vqa_rad_image))
    wait_text(page, "#battle-status", "Loaded synpic54610.jpg")
    for question in ("Is there a fracture?", "Where is it?"):
        page.locator("#battle-question textarea").fill(question)
        page.locator("#battle-question textarea").press("Enter")
        wait_text(page, "#battle-status", "Both models are answering", timeout=120_000)
        wait_text(page, "#battle-status", "Which answer is better", timeout=180_000)
    for side in ("#battle-a-chat", "#battle-b-chat"):
        assert page.locator(f'{side} [data-testid="bot"]').count() == 2 and page.locator(f'{side} [data-testid="user"]').count() == 2
    panel = page.locator("#battle-a-chat").inner_text() + page.locator("#battle-b-chat").inner_text() + page.locator("#battle-status").inner_text()
    assert not any(name in panel for name in names)
    page.wait_for_timeout(500)  # read both
    page.locator("#battle-question textarea").press("Escape")  # out of the question box, as a user leaves it
    page.keyboard.press("1")
    wait_text(page, "#battle-status", "A is better")
    shown = page.locator("#battle-status").inner_text()
    assert all(name in shown for name in names) and "Not stored" in shown
    assert page.locator("#battle-status").locator("img, a, code, strong").count() == 0  # the folder's markup drew nothing
    page.locator("#battle-question textarea").fill("And now?")
    page.locator("#battle-question textarea").press("Enter")
    wait_text(page, "#battle-status", "This battle is decided")
    assert page.get_by_text("Error", exact=True).count() == 0
    page.close()
