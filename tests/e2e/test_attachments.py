"""Attaching files in a real browser: Attach and paste, upload, send, the thumbnails after a
reload, and another person's 404."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import BrowserContext, expect

from conversations.demo.server import FakeGateway
from conversations.models import ApiCredential, Attachment
from tests.conftest import make_user
from tests.e2e import axe
from tests.e2e.conftest import Console, open_new_chat, sign_in_with_cookie
from tests.support import files
from tests.support.processes import DaphneProcess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# A PNG drawn in the page and pasted as a screenshot would be.
PASTE_A_SCREENSHOT = """
async () => {
  const canvas = document.createElement("canvas");
  canvas.width = 320; canvas.height = 200;
  const context = canvas.getContext("2d");
  context.fillStyle = "#2456c7"; context.fillRect(0, 0, 320, 200);
  context.fillStyle = "#ffffff"; context.fillRect(40, 40, 120, 60);
  const blob = await new Promise((done) => canvas.toBlob(done, "image/png"));
  const data = new DataTransfer();
  data.items.add(new File([blob], "screenshot.png", { type: "image/png" }));
  const box = document.querySelector("#composer-input");
  box.focus();
  box.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
}
"""

# Files dropped on the composer as a file manager drops them: a `drop` event whose
# DataTransfer holds the files (`dragover` first, which must let the drop happen).
DROP_FILES = """
async (names) => {
  const data = new DataTransfer();
  for (const name of names) {
    if (name.endsWith(".png")) {
      const canvas = document.createElement("canvas");
      canvas.width = 64; canvas.height = 48;
      const blob = await new Promise((done) => canvas.toBlob(done, "image/png"));
      data.items.add(new File([blob], name, { type: "image/png" }));
    } else {
      data.items.add(new File(["city,people\\nShenzhen,17\\n"], name, { type: "text/csv" }));
    }
  }
  const form = document.querySelector("#composer-input").form;
  const over = new DragEvent("dragover", { dataTransfer: data, bubbles: true, cancelable: true });
  form.dispatchEvent(over);
  const accepted = over.defaultPrevented && form.classList.contains("composer--drop");
  form.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
  return accepted;
}
"""


def test_attach_by_button_and_by_paste_send_and_see_the_thumbnails_after_a_reload(
    browser_context: tuple[BrowserContext, Console],
    server: DaphneProcess,
    chatter: Any,
    gateway: FakeGateway,
    browser: Any,
) -> None:
    context, _ = browser_context
    page = open_new_chat(context, server, chatter)
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Attach").click()
    chooser.value.set_files(
        {"name": "holiday.jpg", "mimeType": "image/jpeg", "buffer": files.photo(2400, 1600)}
    )
    page.evaluate(PASTE_A_SCREENSHOT)
    chips = page.locator("#composer-files .file-chip")
    expect(chips).to_have_count(2)
    expect(chips.nth(0)).to_have_attribute("data-state", "ready")
    expect(chips.nth(1)).to_have_attribute("data-state", "ready")
    expect(page.get_by_role("button", name="Remove holiday.jpg")).to_be_visible()

    page.get_by_role("textbox", name="Message").fill("What is in these pictures?")
    page.get_by_role("button", name="Send").click()
    question = page.locator('article[data-role="user"]').last
    expect(question).to_have_attribute("data-status", "complete")
    expect(page.locator('article[data-role="assistant"]').last).to_have_attribute(
        "data-status", "complete"
    )
    expect(chips).to_have_count(0)
    thumbnails = question.locator("img.attachment__thumb")
    expect(thumbnails).to_have_count(2)

    # What the gateway received: two image blocks, then the question.
    content = gateway.requests[0].body["messages"][-1]["content"]
    assert [block["type"] for block in content] == ["image", "image", "text"]
    with Image.open(io.BytesIO(base64.b64decode(content[0]["source"]["data"]))) as sent:
        assert max(sent.size) == 1568 and not sent.getexif()
    assert content[1]["source"]["media_type"] == "image/png"

    page.reload()
    question = page.locator('article[data-role="user"]').last
    thumbnails = question.locator("img.attachment__thumb")
    expect(thumbnails).to_have_count(2)
    expect(thumbnails.nth(0)).to_have_attribute("alt", "holiday.jpg")
    for index in range(2):
        thumbnails.nth(index).scroll_into_view_if_needed()
        loaded = thumbnails.nth(index).evaluate(
            "(img) => img.complete ? img.naturalWidth : new Promise((done) => img.onload = () => done(img.naturalWidth))"
        )
        assert loaded > 0
    page.screenshot(path=str(server.log_path.parent / "attachments.png"), full_page=True)

    # Another person: the file's address answers 404, as a missing one does.
    url = question.locator("a.attachment__link").first.get_attribute("href")
    assert page.request.get(f"{server.http_url}{url}").status == 200
    stranger_context = browser.new_context()
    try:
        sign_in_with_cookie(stranger_context, server, make_user("mallory"))
        assert stranger_context.request.get(f"{server.http_url}{url}").status == 404
    finally:
        stranger_context.close()
    assert Attachment.objects.filter(message__isnull=False).count() == 2


def test_a_file_the_server_refuses_shows_why_and_nothing_is_sent(
    browser_context: tuple[BrowserContext, Console],
    server: DaphneProcess,
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    page = open_new_chat(context, server, chatter)
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Attach").click()
    chooser.value.set_files(
        {"name": "cat.png", "mimeType": "image/png", "buffer": b"<html>not a picture</html>"}
    )
    chip = page.locator("#composer-files .file-chip")
    expect(chip).to_have_attribute("data-state", "failed")
    expect(chip.get_by_role("alert")).to_contain_text("cat.png")
    page.get_by_role("button", name="Remove cat.png").click()
    expect(chip).to_have_count(0)
    assert Attachment.objects.count() == 0
    assert gateway.requests == []


def test_the_files_to_send_and_the_files_sent_pass_axe(
    make_context: Any, server: DaphneProcess, chatter: Any, gateway: FakeGateway
) -> None:
    """Issue 18 asks that the chips and the sent files be screen-reader friendly: axe
    (WCAG A/AA) on chips ready and refused, then on a message's thumbnail and file chip:
    English in the light theme, Chinese in the dark one."""
    for locale, scheme in (("en-US", "light"), ("zh-CN", "dark")):
        context = make_context(locale=locale, color_scheme=scheme, bypass_csp=True)
        page = open_new_chat(context, server, chatter)
        with page.expect_file_chooser() as chooser:
            page.locator("#attach").click()
        chooser.value.set_files(
            [
                {"name": "chart.png", "mimeType": "image/png", "buffer": files.png()},
                {"name": "report.pdf", "mimeType": "application/pdf", "buffer": files.pdf()},
                {"name": "cat.png", "mimeType": "image/png", "buffer": b"<html>no</html>"},
            ]
        )
        chips = page.locator("#composer-files .file-chip")
        expect(chips.nth(0)).to_have_attribute("data-state", "ready")
        expect(chips.nth(1)).to_have_attribute("data-state", "ready")
        expect(chips.nth(2)).to_have_attribute("data-state", "failed")
        failures = axe.blocking(axe.run(page))
        assert not failures, f"{locale} {scheme}, files to send:\n{axe.describe(failures)}"

        chips.nth(2).locator(".file-chip__remove").click()
        page.locator("#composer-input").fill("Look")
        page.locator("#composer-input").press("Enter")
        expect(page.locator('article[data-role="assistant"]').last).to_have_attribute(
            "data-status", "complete"
        )
        page.reload()
        question = page.locator('article[data-role="user"]').last
        expect(question.locator("img.attachment__thumb")).to_have_count(1)
        expect(question.locator(".attachment--file")).to_have_count(1)
        failures = axe.blocking(axe.run(page))
        assert not failures, f"{locale} {scheme}, files sent:\n{axe.describe(failures)}"


def test_files_dropped_on_the_composer_are_attached_and_sent(
    browser_context: tuple[BrowserContext, Console],
    server: DaphneProcess,
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    page = open_new_chat(context, server, chatter)
    assert page.evaluate(DROP_FILES, ["chart.png", "cities.csv"])
    chips = page.locator("#composer-files .file-chip")
    expect(chips).to_have_count(2)
    expect(chips.nth(0)).to_have_attribute("data-state", "ready")
    expect(chips.nth(1)).to_have_attribute("data-state", "ready")
    expect(page.locator("#composer-input").locator("xpath=ancestor::form")).not_to_have_class(
        "composer--drop"
    )
    page.get_by_role("textbox", name="Message").fill("Plot it")
    page.get_by_role("button", name="Send").click()
    expect(page.locator('article[data-role="assistant"]').last).to_have_attribute(
        "data-status", "complete"
    )
    content = gateway.requests[0].body["messages"][-1]["content"]
    assert [block["type"] for block in content] == ["image", "text", "text"]
    assert content[1]["text"] == "File: cities.csv\n\ncity,people\nShenzhen,17\n"
    assert content[2]["text"] == "Plot it"


def test_an_image_for_a_model_that_cannot_see_is_refused_before_upload(
    browser_context: tuple[BrowserContext, Console],
    server: DaphneProcess,
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    ApiCredential.objects.filter(user=chatter).update(vision=False)
    context, _ = browser_context
    page = open_new_chat(context, server, chatter)
    page.evaluate(DROP_FILES, ["photo.png", "cities.csv"])
    notice = page.locator("#notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("cannot see images")
    expect(notice).to_contain_text("photo.png")
    chips = page.locator("#composer-files .file-chip")
    expect(chips).to_have_count(1)  # the CSV only
    expect(chips.first).to_have_attribute("data-state", "ready")
    assert list(Attachment.objects.values_list("name", flat=True)) == ["cities.csv"]
