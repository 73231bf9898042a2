"""The console on the index page, in a real browser (Debian's chromium, headless, driven by
Playwright) against the real Prosody: list the admin commands, run add-user through its form,
then the new user logs in over XMPP. Never skipped: a missing chromium is installed (as root)
or the test fails."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from clients import connect_client
from tools.chromium import FLAGS, ensure_chromium

ADMIN_NS = "http://jabber.org/protocol/admin#"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "console.png"


@pytest.fixture(scope="session")
def chromium() -> str:
    return ensure_chromium()


@pytest.fixture
async def page(chromium):
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=FLAGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.errors = errors  # type: ignore[attr-defined]
            yield page
        finally:
            await browser.close()


async def log_in(page, component, jid="admin@localhost", password="adminpass"):
    await page.goto(component.url + "/rest/")
    await page.fill("#c-key", "test-key")
    await page.fill("#c-jid", jid)
    await page.fill("#c-password", password)


async def test_console_adds_a_user_who_then_logs_in(page, component, xmpp_server, tmp_path):
    await log_in(page, component)
    await page.fill("#c-target", "localhost")
    await page.click("#c-list")
    add_user = page.locator(f'button[data-node="{ADMIN_NS}add-user"]')
    await expect(add_user).to_be_visible()
    listed = await page.locator("#c-commands button").evaluate_all("bs => bs.map(b => b.dataset.node)")
    assert len([node for node in listed if node.startswith(ADMIN_NS)]) == xmpp_server.admin_command_count

    await add_user.click()
    form = page.locator("#c-command-form")
    await expect(form.locator('[name="accountjid"]')).to_be_visible()
    assert await form.locator('[name="password"]').get_attribute("type") == "password"  # text-private
    name = "console-" + uuid.uuid4().hex[:8]
    await form.locator('[name="accountjid"]').fill(f"{name}@localhost")
    await form.locator('[name="password"]').fill("consolepass")
    if await form.locator('[name="password-verify"]').count():
        await form.locator('[name="password-verify"]').fill("consolepass")
    shot = tmp_path / "console-form.png"
    await page.screenshot(path=str(shot), full_page=True)
    print(f"console screenshot (form): {shot}")

    await form.locator("button[data-action]:not([data-action=cancel])").first.click()
    await expect(page.locator(".c-done")).to_contain_text("completed")
    await expect(page.locator("#c-status")).not_to_have_class("c-error")
    await expect(page.locator(".c-note")).to_be_visible()  # the server's note, rendered
    shot = tmp_path / "console-done.png"
    await page.screenshot(path=str(shot), full_page=True)
    print(f"console screenshot (result): {shot}")
    assert not page.errors, page.errors

    client = await connect_client(f"{name}@localhost", "consolepass", "127.0.0.1", xmpp_server.c2s_port)
    try:
        assert client.jid.startswith(f"{name}@localhost/")
    finally:
        await client.disconnect()


async def test_console_multi_stage_result_table_stanza_and_errors(page, component, xmpp_client, tmp_path):
    bob = await xmpp_client("bob")
    await log_in(page, component)
    await page.click("#c-list")
    # a result with fields shown read-only: the online users (bob is online)
    await page.locator(f'button[data-node="{ADMIN_NS}get-online-users-list"]').click()
    form = page.locator("#c-command-form")
    await expect(form.locator("button[data-action]").first).to_be_visible()
    await form.locator("button[data-action]:not([data-action=cancel])").first.click()
    await expect(page.locator(".c-done")).to_contain_text("completed")
    await expect(page.locator("#c-form")).to_contain_text("bob@localhost")

    # send a stanza: bob receives it
    await page.fill("#c-stanza", '<message xmlns="jabber:client" type="chat" to="bob@localhost">'
                                 "<body>from the console</body></message>")
    await page.click("#c-send")
    await expect(page.locator("#c-stanza-result")).to_contain_text("200")
    message = await bob.next_message()
    assert message["body"] == "from the console"

    # an avatar that is not there: the reason is shown, no broken image
    nobody = f"nobody-{uuid.uuid4().hex[:8]}@localhost"  # other tests give alice an avatar
    await page.fill("#c-avatar-jid", nobody)
    await page.click("#c-avatar-get")
    await expect(page.locator("#c-status")).to_have_class("c-error")
    await expect(page.locator("#c-status")).to_contain_text(f"404: No avatar for {nobody}")
    assert await page.locator("#c-avatar-img").is_hidden()

    # a wrong password: the reason from the server, no crash
    await page.fill("#c-password", "wrong")
    await page.click("#c-list")
    await expect(page.locator("#c-status")).to_contain_text("401")
    shot = tmp_path / "console-errors.png"
    await page.screenshot(path=str(shot), full_page=True)
    print(f"console screenshot: {shot}")
    assert not [e for e in page.errors if "401" not in e and "404" not in e], page.errors


async def test_console_screenshot_for_the_readme(page, component, tmp_path):
    """The README's picture: the admin commands listed and add-user's form open."""
    await log_in(page, component)
    await page.click("#c-list")
    await page.locator(f'button[data-node="{ADMIN_NS}add-user"]').click()
    await expect(page.locator('[name="accountjid"]')).to_be_visible()
    shot = tmp_path / "console.png"
    await page.locator("#console").screenshot(path=str(shot))
    print(f"console screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    if not DOCS_SCREENSHOT.exists():  # the committed copy is made once; delete it to refresh it
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copy(shot, DOCS_SCREENSHOT)
