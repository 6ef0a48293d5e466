"""The admin UI in Chromium: refuses without credentials (and a cross-site write from a
logged-in browser), logs in, shows the connections the chat pages opened, publishes into
their room and disconnects a user."""

from __future__ import annotations

import json
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import ADMIN_PASSWORD, ChatStack, screenshot
from tests.browser.test_chat_page import TIMEOUT_MS, join

LOBBY = "chat:lobby"


def admin_page(browser: Any, stack: ChatStack) -> Any:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.goto(stack.admin_url)
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    return page


def log_in(page: Any) -> None:
    page.get_by_label("Admin password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Nodes")).to_be_visible(timeout=TIMEOUT_MS)


def test_refuses_without_credentials(browser: Any, chat_stack: ChatStack) -> None:
    page = admin_page(browser, chat_stack)
    try:
        page.get_by_label("Admin password").fill("not the admin password")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_have_text("Login failed: wrong password")
        expect(page.get_by_role("heading", name="Nodes")).to_be_hidden()
        for path in ("state", f"channel?name={LOBBY}"):
            response = page.request.get(f"{chat_stack.admin_url}/api/{path}")
            assert response.status == 401
        screenshot(page, "admin-login-refused")
    finally:
        page.context.close()


def test_shows_connections_publishes_and_disconnects(browser: Any, chat_stack: ChatStack) -> None:
    alice = join(browser, chat_stack, "alice")
    bob = join(browser, chat_stack, "bob")
    page = admin_page(browser, chat_stack)
    try:
        log_in(page)
        connections = page.locator("#connections tbody")
        for user in ("alice", "bob"):
            expect(connections.get_by_role("row").filter(has_text=user)).to_contain_text(LOBBY)
        nodes = page.locator("#nodes tbody tr")
        expect(nodes).to_have_count(1)
        expect(nodes.locator("td").nth(2)).to_have_text("2")  # connections on the node
        lobby = page.locator("#channels tbody tr").filter(has_text=LOBBY)
        expect(lobby.locator("td").nth(1)).to_have_text("2")

        lobby.get_by_role("button", name=f"Inspect channel {LOBBY}").click()
        presence = page.locator("#presence li")
        expect(presence).to_have_count(2)
        expect(presence.first).to_contain_text("alice")

        page.get_by_role("textbox", name="Channel", exact=True).fill(LOBBY)
        page.get_by_label("Data (JSON)").fill(json.dumps({"text": "maintenance at noon"}))
        page.get_by_role("button", name="Publish", exact=True).click()
        expect(page.locator("#action-result")).to_contain_text(f"Published to {LOBBY}")
        for chat in (alice, bob):
            expect(chat.locator("#messages li").last).to_have_text("someone:maintenance at noon")
        expect(page.locator("#history li").first).to_contain_text("maintenance at noon")
        screenshot(page, "admin-console")

        connections.get_by_role("button", name="Disconnect user bob").click()
        expect(page.locator("#action-result")).to_have_text("Disconnected user bob.")
        expect(bob.locator("#status")).to_contain_text("Disconnected", timeout=TIMEOUT_MS)
        expect(connections.get_by_role("row").filter(has_text="bob")).to_have_count(0)
        expect(alice.locator("#status")).to_have_text("Connected as alice")
    finally:
        for each in (alice, bob, page):
            each.context.close()


def test_a_logged_in_browser_refuses_a_cross_site_write(
    browser: Any, chat_stack: ChatStack
) -> None:
    """Another origin on the same site (the chat page's server) gets the SameSite cookie
    but not the CSRF token, and its Origin is not the admin's: nothing is published."""
    page = admin_page(browser, chat_stack)
    try:
        log_in(page)
        other = page.context.new_page()
        other.goto(chat_stack.page_url)
        status = other.evaluate(
            """async (url) => {
                const r = await fetch(url, {method: "POST", mode: "no-cors", credentials: "include",
                    headers: {"Content-Type": "text/plain"},
                    body: JSON.stringify({channel: "chat:lobby", data: {text: "forged"}})});
                return r.type;
            }""",
            f"{chat_stack.admin_url}/api/publish",
        )
        assert status == "opaque"  # the browser sent it; the answer is hidden from the page
        detail = page.request.get(f"{chat_stack.admin_url}/api/channel?name={LOBBY}").json()
        assert all(p["data"] != {"text": "forged"} for p in detail["history"] or [])
    finally:
        page.context.close()
