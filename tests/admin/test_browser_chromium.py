"""The admin in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`)
driven by Selenium against the real server under gunicorn, started as tests/blackbox does (SQLite
in a temp dir, or the PostgreSQL of DATABASE_URL; every path lies below a fresh `/adm-<random>`).
Selenium Manager is never asked for anything: the driver and the browser are given by path."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.blackbox.conftest import _environment
from tests.servers import free_port, manage, start_gunicorn, stop_gunicorn

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402, N812
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1000"]
WAIT = 15

pytestmark = [
    pytest.mark.blackbox,
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="needs Debian's chromium and chromium-driver (scripts/test.sh)"),
]


@dataclass
class Console:
    base_url: str
    username: str
    password: str
    key: str
    prefix: str  # "/adm-<random>"


@pytest.fixture(scope="module")
def console(tmp_path_factory) -> Iterator[Console]:
    """gunicorn with a superuser who has a password (for the login form) and an API key."""
    tmp = tmp_path_factory.mktemp("callfs-admin")
    port = free_port()
    env = _environment(tmp, port, f"alice-{secrets.token_hex(16)}", f"bob-{secrets.token_hex(16)}")
    tag = secrets.token_hex(4)
    username, password = f"boss-{tag}", secrets.token_urlsafe(16)
    key = f"cfs_{secrets.token_hex(20)}"
    manage(env, "migrate", "--noinput")
    manage({**env, "DJANGO_SUPERUSER_PASSWORD": password}, "createsuperuser", "--noinput",
           "--username", username, "--email", f"{username}@example.invalid")
    manage({**env, "CALLFS_NEW_API_KEY": key}, "create_api_key", username, "--superuser")

    base_url = f"http://127.0.0.1:{port}"
    process = start_gunicorn(env, tmp / "gunicorn.log", base_url)
    try:
        yield Console(base_url, username, password, key, f"/adm-{tag}")
    finally:
        stop_gunicorn(process)


@pytest.fixture
def browser():
    profile = tempfile.mkdtemp(prefix="callfs-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, by, value):
    return WebDriverWait(driver, WAIT).until(EC.presence_of_element_located((by, value)))


def click_link(driver, text: str) -> None:
    WebDriverWait(driver, WAIT).until(EC.element_to_be_clickable((By.LINK_TEXT, text))).click()


def test_log_in_browse_to_a_file_and_revoke_its_link(console, browser, tmp_path):
    base, top = console.base_url, console.prefix
    api = requests.Session()
    api.headers.update({"Authorization": f"Bearer {console.key}", "Connection": "close"})
    data = b"the quarterly report\n" * 100
    response = api.put(f"{base}/v1/files{top}/docs/report.txt", data=data, timeout=10)
    assert response.status_code == 201, response.text
    response = api.post(f"{base}/v1/links/generate", timeout=10,
                        json={"path": f"{top}/docs/report.txt", "expiry_seconds": 3600})
    assert response.status_code == 201, response.text
    token = response.json()["token"]
    public_id = token.split(".")[0]

    # Log in through the form; the dashboard comes first.
    browser.get(f"{base}/admin/login/?next=/admin/")
    wait_for(browser, By.NAME, "username").send_keys(console.username)
    browser.find_element(By.NAME, "password").send_keys(console.password)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    assert int(wait_for(browser, By.ID, "callfs-total-files").text) >= 1

    # From / down to the file, by clicking.
    click_link(browser, "Browse files")
    click_link(browser, f"{top.lstrip('/')}/")
    click_link(browser, "docs/")
    click_link(browser, "report.txt")
    sha256 = wait_for(browser, By.ID, "callfs-sha256").text
    assert sha256 == api.head(f"{base}/v1/files{top}/docs/report.txt",
                              timeout=10).headers["X-CallFS-SHA256"]
    assert browser.find_element(By.ID, "callfs-mode").text == "-rw-r--r--"
    assert browser.find_element(By.ID, "callfs-active-links").text == "1"

    # The file's links, revoked with the admin action.
    click_link(browser, "manage")
    checkbox = wait_for(browser, By.CSS_SELECTOR, "input[name=_selected_action]")
    assert public_id in browser.page_source
    assert token not in browser.page_source and token.split(".")[1] not in browser.page_source
    checkbox.click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("revoke")
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    message = wait_for(browser, By.CSS_SELECTOR, "ul.messagelist li.success")
    assert "1 link(s) revoked" in message.text

    record = api.get(f"{base}/v1/links/{public_id}", timeout=10).json()
    assert record["state"] == "revoked"
    gone = requests.get(f"{base}/download/{token}", timeout=10)
    assert gone.status_code == 410 and gone.json()["code"] == "LINK_EXPIRED"

    screenshot = tmp_path / "links.png"
    assert browser.save_screenshot(str(screenshot))
    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
