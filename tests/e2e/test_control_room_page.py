"""The control-room page in real headless Chromium against a live server, real Kafka and
Postgres: an alert produced on Kafka appears within 2 s, acknowledging it on the page changes
it in the API, and the page fetches nothing from outside."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By

from services.adapters.settings import Settings
from services.http import create_app
from tests.support.alerts import CASE_OWNER, alert, order_for_alerts, produce
from tests.support.browser import ARTIFACTS, chromium
from tests.support.http import auth
from tests.support.kafka import wait_for
from tests.support.server import serving

pytestmark = pytest.mark.integration
REGION = "midden-nederland"


@pytest.fixture(scope="module")
def live_url(migrated: Settings) -> Iterator[str]:
    with serving(create_app(migrated, services=("ingest", "dispatcher"))) as url:
        yield url


def _until(check: object, timeout_s: float, step_s: float = 0.02) -> float | None:
    """Seconds until `check()` held, or None if it never did."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if check():  # type: ignore[operator]
                return time.monotonic() - started
        except StaleElementReferenceException:
            pass  # the page re-rendered between finding an element and reading it: look again
        time.sleep(step_s)
    return None


async def test_an_alert_on_kafka_appears_on_the_page_and_is_acknowledged_there(
    live_url: str, migrated: Settings
) -> None:
    token = auth(migrated, "operator", "op-page", REGION)["Authorization"][7:]
    async with httpx.AsyncClient(base_url=live_url, timeout=10) as http:
        order_id = await order_for_alerts(http, migrated)
        breach = alert(order_id, severity="critical", rule="location_ban")
        with chromium() as page:
            page.get(f"{live_url}/control-room#token={token}")
            live = _until(lambda: page.find_element(By.ID, "conn").text == "live", 15)
            assert live is not None, "the page never connected to the live feed"
            row = f'tr[data-alert-id="{breach.alert_id}"]'
            await produce(migrated, [breach])
            produced_at = time.monotonic()
            shown = _until(lambda: page.find_elements(By.CSS_SELECTOR, row), 10)
            assert shown is not None, "the alert never appeared on the page"
            took = time.monotonic() - produced_at
            assert took < 2.0, f"the alert took {took:.2f} s to appear"
            print(f"alert produced -> on the page: {took * 1000:.0f} ms")
            text = page.find_element(By.CSS_SELECTOR, row).text
            assert "CRITICAL" in text.upper() and order_id in text and CASE_OWNER["name"] in text
            assert "CRITICAL" in page.title  # the cue in the tab, for an operator elsewhere

            page.find_element(By.CSS_SELECTOR, row).click()  # the map and the case owner
            drawn = _until(lambda: page.find_elements(By.CSS_SELECTOR, "#map path"), 10)
            assert drawn is not None, "the map drew no zone"
            ARTIFACTS.mkdir(exist_ok=True)
            page.save_screenshot(str(ARTIFACTS / "control-room.png"))

            page.find_element(By.CSS_SELECTOR, f'{row} button[data-action="acknowledge"]').click()

            async def handling() -> str:
                answer = await http.get(f"/v1/alerts/{breach.alert_id}",
                                        headers=auth(migrated, "admin"))  # fmt: skip
                return str(answer.json()["handling"])

            async def acknowledged() -> bool:
                return await handling() == "acknowledged"

            assert await wait_for(acknowledged, timeout_s=5), await handling()
            updated = _until(
                lambda: page.find_element(By.CSS_SELECTOR, row).get_attribute("data-handling")
                == "acknowledged", 5,
            )  # fmt: skip
            assert updated is not None, "the page did not show the acknowledgement"
            logged = page.get_log("browser")  # type: ignore[no-untyped-call]
            console = [e for e in logged if e["level"] == "SEVERE"]
            assert not console, f"errors in the page: {console}"
            fetched = page.execute_script(
                "return performance.getEntriesByType('resource').map(e => e.name)"
            )
            assert all(url.startswith(live_url) for url in fetched), fetched
