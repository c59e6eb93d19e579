"""The live views (issue 5): the dashboard served by the API, and ``xorjobs status --watch``.

The dashboard's login and cookie rules are checked through the TestClient; the page itself runs in a
real headless Chromium (Debian's chromium and chromium-driver, driven by selenium) against a real API
process and a real worker process on the real Redis, and must show a running sweep finish without a
reload. Its screenshot goes to ``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

import io
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from rich.console import Console

from tests.ci import require
from tests.helpers import TOKEN, run_main, write_known_sweep
from tests.services import clean_env, start_api, start_worker, wait_until
from xorjobs.api.deps import SESSION_COOKIE
from xorjobs.api.main import create_app
from xorjobs.cli import render
from xorjobs.cli.watch import watch_status
from xorjobs.settings import Settings

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
STATIC = Path(__file__).resolve().parent.parent / "api" / "static"


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    return url, write_known_sweep(url)


@pytest.fixture
def client(store: tuple[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=store[0], api_token=TOKEN))) as test_client:
        yield test_client


def log_in(client: TestClient, token: str = TOKEN, next_path: str = "/") -> httpx2.Response:
    return client.post(
        "/login",
        content=f"token={token}&next={next_path}".encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )


@pytest.mark.parametrize(
    ("path", "target"),
    [("/", "/login?next=%2F"), ("/ui/jobs/job-x", "/login?next=%2Fui%2Fjobs%2Fjob-x")],
)
def test_a_page_load_without_the_cookie_is_sent_to_the_login_page(
    client: TestClient, path: str, target: str
) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == target
    login = client.get(target)
    assert login.status_code == 200 and 'name="token"' in login.text and 'action="/login"' in login.text


def test_logging_in_sets_an_httponly_samesite_strict_cookie_that_the_api_accepts(
    client: TestClient, store: tuple[str, str]
) -> None:
    response = log_in(client, next_path="/ui/jobs/job-x")
    assert response.status_code == 303 and response.headers["location"] == "/ui/jobs/job-x"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/" in cookie and TOKEN not in cookie  # the cookie is an HMAC, not the token
    # The client now sends the cookie, as a browser would, on pages, JSON routes and images alike.
    assert client.get("/").status_code == 200 and "log out" in client.get("/").text
    assert client.get("/sweeps").status_code == 200
    plot = client.get(f"/sweeps/{store[1]}/plot.png")
    assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
    assert client.get("/sweeps", headers={"Authorization": "Bearer wrong"}).status_code == 401
    client.post("/logout", follow_redirects=False)
    assert client.get("/sweeps").status_code == 401
    assert client.get("/", follow_redirects=False).status_code == 303


def test_the_sweep_list_the_dashboard_polls_leaves_out_each_spec(
    client: TestClient, store: tuple[str, str]
) -> None:
    log_in(client)
    listed = client.get("/sweeps").json()["sweeps"]
    assert [sweep["sweep_id"] for sweep in listed] == [store[1]] and "spec" not in listed[0]
    assert client.get(f"/sweeps/{store[1]}").json()["spec"]["seeds"] == [1, 2, 3]  # one sweep keeps it


def test_a_wrong_token_or_a_forged_cookie_gets_nothing(client: TestClient) -> None:
    response = log_in(client, token="guess")
    assert response.status_code == 401 and "not the API token" in response.text
    assert "set-cookie" not in response.headers
    client.cookies.set(SESSION_COOKIE, "0" * 64)
    assert client.get("/sweeps").status_code == 401
    assert client.get("/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    "target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:x"]
)
def test_login_never_redirects_off_the_site(client: TestClient, target: str) -> None:
    assert log_in(client, next_path=target).headers["location"] == "/"


def test_without_a_token_configured_the_dashboard_needs_no_login(store: tuple[str, str]) -> None:
    with TestClient(create_app(Settings(database_url=store[0]))) as client:
        assert client.get("/").status_code == 200
        assert "log out" not in client.get("/").text  # nobody logged in
        assert client.get("/login", follow_redirects=False).headers["location"] == "/"


def test_the_pages_load_nothing_from_another_host(client: TestClient) -> None:
    log_in(client)
    page = client.get("/")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "img-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    for name, media_type in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        served = client.get(f"/static/{name}")
        assert served.status_code == 200 and served.headers["content-type"].startswith(media_type)
        assert served.text == (STATIC / name).read_text()
    assert client.get("/static/../deps.py").status_code == 404
    assert client.get("/static/secrets.txt").status_code == 404
    for text in (
        page.text,
        client.get("/ui/jobs/job-x").text,
        # The dashboard's own files; the vendored Swagger UI (api/static/swagger-ui) is tests/test_docs.py's.
        *(path.read_text() for path in STATIC.iterdir() if path.is_file()),
    ):
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), "an external URL"
        assert "<script>" not in text  # no inline script (the CSP would block it)


# --- the dashboard in a real browser -----------------------------------------------------------------


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    require(bool(chromium and driver), "Chromium and chromedriver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1300",
    ):
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="xorjobs-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.binary_location = str(chromium)
    # An explicit chromedriver: selenium's driver manager never downloads anything.
    driver_process = webdriver.Chrome(options=options, service=DriverService(str(driver)))
    driver_process.set_page_load_timeout(30)
    try:
        yield driver_process
    finally:
        driver_process.quit()
        shutil.rmtree(profile, ignore_errors=True)


def text_of(browser: Any, css: str) -> str:
    """The element's text, read in one script call: the page redraws every second, so an element
    handle held across calls could go stale."""
    script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';"
    return str(browser.execute_script(script, css))


def table_rows(browser: Any, css: str) -> list[list[str]]:
    script = (
        "return [...document.querySelectorAll(arguments[0])].map(r => [...r.cells].map(c => c.innerText));"
    )
    rows: list[list[str]] = browser.execute_script(script, css)
    return rows


def image_loaded(browser: Any, css: str) -> bool:
    script = "const i = document.querySelector(arguments[0]); return !!i && i.complete && i.naturalWidth > 0;"
    return bool(browser.execute_script(script, css))


@pytest.mark.redis
@pytest.mark.browser
def test_the_dashboard_shows_a_running_sweep_finish_live_in_a_real_browser(
    tmp_path: Path, redis_url: str, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    env = clean_env(
        XORJOBS_HOME=str(tmp_path / "home"),
        XORJOBS_DATABASE_URL=f"sqlite:///{tmp_path / 'store.db'}",
        XORJOBS_BROKER_URL=redis_url,
        XORJOBS_API_TOKEN=TOKEN,
        XORJOBS_PROGRESS_SECONDS="0.5",
    )
    worker = start_worker(env, tmp_path, concurrency=2)
    api, base_url = start_api(env, tmp_path)
    try:
        # Not logged in: the page load goes to the login form; a wrong token is refused there.
        browser.get(base_url + "/")
        assert "/login" in browser.current_url
        browser.find_element(By.ID, "token").send_keys("wrong")
        browser.find_element(By.ID, "login").click()
        wait_until(lambda: "not the API token" in text_of(browser, "#login-error"), 15, "the refusal")
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.ID, "login").click()
        wait_until(lambda: browser.current_url == base_url + "/", 15, "the dashboard after logging in")
        browser.execute_script("window.loadedOnce = true;")  # a reload would lose it

        api_client = httpx2.Client(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"})
        created = api_client.post(
            "/sweeps",
            json={
                "variants": ["nn", "backprop"],
                "seeds": [1, 2],
                "lrs": [1.0],
                # Long enough for the page to see it unfinished: natively an nn pack of 3000 steps
                # ends within milliseconds, before the page has even picked the sweep up.
                "steps": 20_000,
                "log_every": 100,
            },
        )
        assert created.status_code == 201, created.text
        sweep_id = created.json()["sweep_id"]

        # The page picks the new sweep up by itself and its counts move to 4 succeeded, no reload.
        wait_until(lambda: text_of(browser, "#sweep-id") == sweep_id, 15, "the new sweep on the page")
        seen: list[str] = []

        def all_succeeded() -> bool:
            seen.append(text_of(browser, "#count-succeeded"))
            return seen[-1] == "4"

        try:
            wait_until(all_succeeded, 120, "4 succeeded jobs on the page", interval=0.25)
        except AssertionError as error:
            counts = api_client.get(f"/sweeps/{sweep_id}").json()["counts"]
            raise AssertionError(
                f"{error}; the page showed {seen[-3:]}, the API says {counts}; "
                f"page: {text_of(browser, 'main')[:600]!r}; worker log: {worker.log()[-1500:]}"
            ) from None
        assert any(value in {"0", "1", "2", "3"} for value in seen), seen  # it changed while we watched
        assert browser.execute_script("return window.loadedOnce === true;"), "the page was reloaded"
        assert text_of(browser, "#count-queued") == "0" and text_of(browser, "#count-failed") == "0"

        # The grouped table (by variant) holds the API's numbers; the plot image loaded.
        summary = api_client.get(f"/sweeps/{sweep_id}/summary?by=variant").json()

        def summary_rows() -> list[list[str]]:
            return table_rows(browser, "#summary tbody tr")

        finished_rows = [["nn", "2", "2"], ["backprop", "2", "2"]]
        wait_until(
            lambda: [row[:3] for row in summary_rows()] == finished_rows, 15, "the finished grouped table"
        )
        for row, group in zip(summary_rows(), summary["groups"], strict=True):
            assert row[4].startswith(f"{round(100 * group['solve_rate'])}%")
            assert row[8] == str(group["diverged"])
        assert "cost < 0.05" in text_of(browser, "#summary thead")
        wait_until(lambda: image_loaded(browser, "#plot"), 30, "the cost-curve plot to load")
        assert browser.execute_script("return document.querySelector('#plot').naturalWidth;") == 800
        ARTIFACTS.mkdir(exist_ok=True)
        time.sleep(0.5)  # let the last redraw settle before the picture
        browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))

        # The job page: its record and its own curve.
        first_job = created.json()["jobs"][0]["id"]
        wait_until(lambda: browser.find_elements(By.LINK_TEXT, first_job), 15, "the job's link")
        browser.execute_script(
            "document.querySelector(`a[href='/ui/jobs/${arguments[0]}']`).click();", first_job
        )
        wait_until(lambda: "succeeded" in text_of(browser, "#record"), 15, "the job's record")
        assert first_job in text_of(browser, "#record") and "accuracy" in text_of(browser, "#record")
        wait_until(lambda: image_loaded(browser, "#plot"), 30, "the job's plot to load")
        browser.save_screenshot(str(ARTIFACTS / "dashboard-job.png"))
    finally:
        api.stop()
        worker.stop()


def visible(browser: Any, css: str) -> bool:
    script = "const e = document.querySelector(arguments[0]); return !!e && !e.hidden && !!e.offsetParent;"
    return bool(browser.execute_script(script, css))


def requested(browser: Any) -> list[str]:
    return list(browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name);"))


@pytest.mark.browser
def test_the_page_says_it_is_loading_follows_the_grouping_and_serves_the_docs_in_a_real_browser(
    tmp_path: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    url = f"sqlite:///{tmp_path / 'store.db'}"
    sweep_id = write_known_sweep(url)
    env = clean_env(XORJOBS_HOME=str(tmp_path / "home"), XORJOBS_DATABASE_URL=url)  # no token: no login
    api, base_url = start_api(env, tmp_path)
    try:
        # The summary and the plot held back, as a slow store would: the page says it is loading them.
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/summary?*", "*/plot.png?*"]})
        browser.get(base_url + "/")
        wait_until(lambda: text_of(browser, "#sweep-id") == sweep_id, 15, "the sweep on the page")
        time.sleep(1.5)  # a poll or two: still nothing to draw
        assert visible(browser, "#summary-loading") and visible(browser, "#plot-loading")
        assert not browser.find_elements(By.CSS_SELECTOR, ".logout")  # no token set, nobody to log out
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})

        def drawn(by: str, first_cells: list[str]) -> bool:
            rows = table_rows(browser, "#summary tbody tr")
            shown_by = browser.execute_script("return document.querySelector('#plot').dataset.by;")
            return (
                [row[0] for row in rows] == first_cells
                and shown_by == by
                and image_loaded(browser, "#plot")
                and not visible(browser, "#summary-loading")
                and not visible(browser, "#plot-loading")
            )

        wait_until(lambda: drawn("variant", ["nn", "backprop"]), 30, "the table and plot by variant")
        # "Results by" lr: the table and the plot both follow.
        choose = "const by = document.querySelector('#by'); by.value = arguments[0];"
        browser.execute_script(choose + " by.dispatchEvent(new Event('change'));", "lr")
        wait_until(lambda: drawn("lr", ["1", "0.5"]), 30, "the table and plot by lr")
        assert any("/plot.png?by=lr&" in name for name in requested(browser))
        # The jobs table asks only for the rows it shows.
        assert any(name.endswith(f"/sweeps/{sweep_id}?limit=500") for name in requested(browser))

        # /docs: Swagger UI renders the API's operations from files this API serves.
        browser.get(base_url + "/docs")
        operations = "return document.querySelectorAll('.opblock').length;"
        wait_until(lambda: browser.execute_script(operations) >= 10, 30, "Swagger UI's operations")
        assert all(name.startswith(base_url) for name in requested(browser)), requested(browser)
    finally:
        api.stop()


# --- xorjobs status --watch ------------------------------------------------------------------------


def test_status_watch_prints_once_when_stdout_is_not_a_terminal(
    store: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XORJOBS_DATABASE_URL", store[0])
    started = time.monotonic()
    code, out, _ = run_main(["status", store[1], "--watch"], monkeypatch, capsys)  # one job stays queued
    assert code == 0 and time.monotonic() - started < 10
    assert out.count(f"sweep {store[1]}") == 1 and "queued 1" in out


def test_status_watch_redraws_in_place_until_every_job_finished() -> None:
    statuses = iter(
        {"sweep_id": "sw-test", "counts": counts, "jobs": []}
        for counts in (
            {"queued": 2, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0},
            {"queued": 0, "running": 1, "succeeded": 1, "failed": 0, "cancelled": 0},
            {"queued": 0, "running": 0, "succeeded": 1, "failed": 1, "cancelled": 0},
        )
    )
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    last = watch_status(
        lambda: next(statuses), console, lambda status: render.jobs_table(status["jobs"], "jobs", False), 0.01
    )
    assert last["counts"]["failed"] == 1
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "0/2" in text and "2/2" in text and "ETA" in text
    assert "\x1b[2K" in screen.getvalue() or "\x1b[1A" in screen.getvalue()  # cursor moves: drawn in place
