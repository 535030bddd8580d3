"""The dashboard in a real headless Chromium, JavaScript switched off: it loads, signs in with a key through its form,
shows the ledger's teams and totals, and a team key sees only its team. Screenshots go to the test's temp folder."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.reports.browser import Chromium, Page
from tests.reports.conftest import UNPRICED_MODEL, Ledger, expected_report

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

RANGE = "since=2025-12-01&until=2027-02-01"


def _text(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert found, f"#{element_id} is not on the page"
    return found.group(1)


def _row_cost(html: str, team: str, model: str) -> str:
    found = re.search(rf'<tr[^>]*data-team="{team}" data-model="{re.escape(model)}">(.*?)</tr>', html)
    assert found, f"no row for {team} / {model}"
    return re.findall(r'<td class="n cost">([^<]*)</td>', found.group(1))[0]


async def sign_in(page: Page, base: str, secret: str) -> str:
    await page.call("Emulation.setScriptExecutionDisabled", value=True)
    await page.call("Emulation.setDeviceMetricsOverride", width=1280, height=1200, deviceScaleFactor=1, mobile=False)
    await page.navigate(f"{base}/dashboard")
    assert 'id="login"' in await page.html()
    await page.type_into("#key", secret)
    await page.press_enter()
    assert await page.url() == f"{base}/dashboard"
    cookies = (await page.call("Network.getCookies", urls=[f"{base}/dashboard"]))["cookies"]
    [cookie] = [c for c in cookies if c["name"] == "vbp_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and secret not in cookie["value"]
    await page.navigate(f"{base}/dashboard?{RANGE}")
    return await page.html()


async def drive(ledger: Ledger, folder: Path) -> None:
    base = ledger.env.proxy.url
    async with Chromium() as browser:
        admin = await browser.page()
        html = await sign_in(admin, base, ledger.env.keys["admin"])
        want = expected_report(ledger.jobs, ("team", "model"))
        assert "admin key" in html
        assert _text(html, "total-cost") == want["totals"]["cost_usd"]
        assert _text(html, "total-jobs") == str(want["totals"]["jobs"])
        assert _text(html, "total-unpriced") == "1" and _text(html, "total-unmeterable") == "1"
        assert _text(html, "total-in-flight") == "1"
        for row in want["rows"]:
            shown = _row_cost(html, row["team"], row["model"])
            assert shown == ("n/a" if row["model"] == UNPRICED_MODEL else row["cost_usd"])
        assert set(re.findall(r'<rect class="bar"[^>]*data-team="([^"]+)"', html)) == {"team-a", "team-b"}
        assert '<span class="badge">1 unpriced</span>' in html and ledger.in_flight in html
        png = await admin.screenshot(folder / "dashboard-admin.png")
        assert png.startswith(b"\x89PNG") and len(png) > 20_000

        team = await browser.page()  # a new browser context: no cookie from the admin's session
        html = await sign_in(team, base, ledger.env.keys["team-b"])
        want = expected_report(ledger.jobs, ("team", "model"), lambda j: j.team == "team-b")
        assert _text(html, "signed-in-team") == "team-b"
        assert _text(html, "total-cost") == want["totals"]["cost_usd"]
        assert set(re.findall(r'data-team="([^"]+)"', html)) == {"team-b"}
        assert "team-a" not in html and ledger.in_flight not in html
        await team.screenshot(folder / "dashboard-team-b.png")
        await admin.close()
        await team.close()


def test_the_dashboard_in_a_real_browser(ledger: Ledger, tmp_path: Path) -> None:
    asyncio.run(drive(ledger, tmp_path))
    assert (tmp_path / "dashboard-admin.png").stat().st_size > 20_000
    assert (tmp_path / "dashboard-team-b.png").exists()
