"""The dashboard on a real 3-node cluster: its data route, then the page in headless Chromium.

Node c trusts no publisher, so the rollout matrix has something to show: the
module active on a and b, refused on c. Every API reply is checked against
schemas/openapi.yaml (``call``). The browser test drives Debian's chromium
through selenium (``scripts/bootstrap --browser`` installs both; CI runs it
with CI=true) and keeps a screenshot: in the test's tmp dir, and also at the
path in ``EDGESTATE_DASHBOARD_SCREENSHOT`` when that is set (how
docs/dashboard.png was made), so a CI run never dirties the tree.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgestate.devkit import Publisher, example_bundle, make_publisher
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, eventually, start_node
from tests.node.test_modules_e2e import BUILD, deploy, invoke

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# Bounded waits for the page: a poll is 2 s, a node record 1-5 s.
PAGE_WAIT_S = 30


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NodeProcess]]:
    root = tmp_path_factory.mktemp("dashboard")
    publisher: Publisher = make_publisher(root / "publisher")
    nodes: dict[str, NodeProcess] = {}
    try:
        for name in ("a", "b", "c"):
            data = root / name
            data.mkdir()
            if name != "c":  # c trusts nobody: it refuses the module and says why
                shutil.copy(publisher.policy_path, data / "trust-policy.json")
            peers = ["--peer", f"127.0.0.1:{nodes['a'].sync_port}"] if nodes else []
            nodes[name] = start_node(data, "--no-mdns", *peers)
        assert deploy(nodes["a"], example_bundle("counter", publisher, BUILD)).status == 201
        yield nodes
    finally:
        for n in nodes.values():
            n.stop()


def overview(node: NodeProcess, **query: str) -> dict[str, Any]:
    reply = call(node.api, "GET", "/v1/admin/overview", token=node.token, query=query or None)
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.json()
    return body


def rollout_seen(node: NodeProcess, ids: list[str]) -> dict[str, Any] | None:
    """The counter row of ``node``'s matrix once every node's verdict is in it."""
    for row in overview(node)["modules"]["rows"]:
        if row["name"] == "counter" and set(row["cells"]) == set(ids):
            return dict(row)
    return None


def test_overview_refuses_without_the_admin_token(cluster: dict[str, NodeProcess]) -> None:
    a = cluster["a"]
    missing = call(a.api, "GET", "/v1/admin/overview")
    assert missing.status == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    wrong = call(a.api, "GET", "/v1/admin/overview", token="not-" + a.token)
    assert wrong.status == 403
    assert wrong.json()["error"]["code"] == "forbidden"
    # the page shell is public (it holds no data), the route behind it is not
    page = call(a.api, "GET", "/ui", validate=False)
    assert page.status == 200 and b"login-form" in page.body
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert call(a.api, "GET", "/ui/secret.txt").status == 404


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"sort": "size; drop"}, "sort"),
        ({"filter": "x" * 65}, "filter"),
        ({"pages": "2"}, "pages"),
    ],
)
def test_overview_names_a_bad_parameter(
    cluster: dict[str, NodeProcess], query: dict[str, str], named: str
) -> None:
    a = cluster["a"]
    reply = call(a.api, "GET", "/v1/admin/overview", token=a.token, query=query, validate=False)
    assert reply.status == 400, reply.body
    error = reply.json()["error"]
    assert error["code"] == "bad_request" and named in error["message"]
    assert call(a.api, "GET", "/healthz").status == 200  # and the node keeps serving


def test_overview_refuses_a_repeated_parameter(cluster: dict[str, NodeProcess]) -> None:
    a = cluster["a"]
    request = urllib.request.Request(
        a.api + "/v1/admin/overview?limit=5&limit=500",
        headers={"Authorization": f"Bearer {a.token}"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 400
    assert "'limit' is given twice" in refused.value.read().decode()


def test_overview_is_gzipped_for_a_browser(cluster: dict[str, NodeProcess]) -> None:
    a = cluster["a"]
    request = urllib.request.Request(
        a.api + "/v1/admin/overview",
        headers={"Authorization": f"Bearer {a.token}", "Accept-Encoding": "gzip"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"  # through the worker's relay too
        body = json.loads(gzip.decompress(resp.read()))
    assert body["node"]["node_id"] == a.node_id


def test_overview_shows_every_node_and_the_rollout(cluster: dict[str, NodeProcess]) -> None:
    a, b, c = cluster["a"], cluster["b"], cluster["c"]
    ids = [a.node_id, b.node_id, c.node_id]
    # b and c are not peers of each other, yet a's view (and b's) has all three
    for viewer in (a, b):
        row = eventually(lambda v=viewer: rollout_seen(v, ids), what="the rollout matrix")
        assert row["cells"][a.node_id]["state"] == "active"
        assert row["cells"][b.node_id]["state"] == "active"
        assert row["cells"][c.node_id]["state"] == "refused"
        assert row["cells"][c.node_id]["error_code"]
        assert row["converged"] is False
    body = overview(a)
    assert body["modules"]["nodes"][0] == a.node_id
    states = {n["node_id"]: n["state"] for n in body["nodes"]}
    assert states == {a.node_id: "self", b.node_id: "up", c.node_id: "up"}
    # c's own record names its link to a: links are known beyond our own peers
    assert any(ln["from"] == c.node_id and ln["to"] == a.node_id for ln in body["links"])
    # heartbeats from b and c arrived: the write-to-visible histogram fills
    wtv = eventually(
        lambda: (w := overview(a)["live"]["write_to_visible"])["count"] >= 2 and w,
        what="peer heartbeats",
    )
    assert sum(bk["count"] for bk in wtv["buckets"]) == wtv["count"]
    assert wtv["p50_ms"] is not None and wtv["p50_ms"] <= wtv["p99_ms"]
    # ... and is on /metrics as a Prometheus histogram
    metrics = call(a.api, "GET", "/metrics", validate=False).body.decode()
    count = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("edgestate_write_to_visible_seconds_count")
    )
    assert count >= 2


def test_overview_times_invocations_and_flags_slow_instantiation(
    cluster: dict[str, NodeProcess],
) -> None:
    a = cluster["a"]
    for _ in range(5):
        assert invoke(a, "counter", b"hits").status == 200

    def counted() -> dict[str, Any] | None:
        rows = {m["name"]: m for m in overview(a)["live"]["modules"]}
        row = rows.get("counter")
        return row if row and row["ok"] >= 5 else None

    row = eventually(counted, what="invocation figures from the worker")
    assert row["instantiate_ms"] > 0 and row["execute_ms"] > 0
    assert row["instantiate_exceeds_execute"] is (row["instantiate_ms"] > row["execute_ms"])


def test_overview_pages_documents_and_stays_bounded(cluster: dict[str, NodeProcess]) -> None:
    a = cluster["a"]
    for i in range(60):
        reply = call(
            a.api,
            "PUT",
            f"/v1/admin/docs/dash-{i:03d}/keys/k",
            b"x" * (i + 1),
            token=a.token,
            content_type="application/octet-stream",
            query={"create": "true"},
        )
        assert reply.status == 200, reply.body
    first = overview(a, filter="dash-", limit="10")["documents"]
    assert first["total"] == 60 and len(first["rows"]) == 10
    # sorted by bytes, biggest first: the one written with 60 bytes leads
    assert first["rows"][0]["name"] == "dash-059"
    second = overview(a, filter="dash-", limit="10", offset="10")["documents"]
    assert not {r["name"] for r in first["rows"]} & {r["name"] for r in second["rows"]}
    by_name = overview(a, filter="dash-00", sort="name")["documents"]
    assert [r["name"] for r in by_name["rows"]] == [f"dash-00{i}" for i in range(10)]
    whole = call(a.api, "GET", "/v1/admin/overview", token=a.token, query={"limit": "200"})
    assert len(whole.json()["documents"]["rows"]) <= 200
    # a document nobody else reported yet names who holds its collection back
    assert all(isinstance(r["held_back_by"], list) for r in first["rows"])


@pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver: run scripts/bootstrap --browser",
)
def test_dashboard_in_a_real_browser(cluster: dict[str, NodeProcess], tmp_path: Path) -> None:
    pytest.importorskip("selenium", reason="selenium is in the test extra")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    a, b, c = cluster["a"], cluster["b"], cluster["c"]
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1900",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    os.environ.setdefault("SE_AVOID_STATS", "true")  # selenium manager: no telemetry
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        driver.set_page_load_timeout(PAGE_WAIT_S)
        wait = WebDriverWait(driver, PAGE_WAIT_S, poll_frequency=0.2)
        driver.get(a.api + "/")  # redirects to /ui
        assert driver.current_url.endswith("/ui")
        # not signed in: the form, and no data
        wait.until(lambda d: d.find_element(By.ID, "login").is_displayed())
        assert not driver.find_element(By.ID, "board").is_displayed()
        driver.find_element(By.ID, "token").send_keys("wrong-token")
        driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
        wait.until(lambda d: "forbidden" in d.find_element(By.ID, "login-error").text)

        driver.find_element(By.ID, "token").send_keys(a.token)
        driver.find_element(By.CSS_SELECTOR, "#login-form button").click()

        # Read in one script: the page redraws every poll, so elements found in one
        # call may be gone by the next.
        def states(d: Any, selector: str) -> dict[str, str]:
            found: dict[str, str] = d.execute_script(
                "return Object.fromEntries([...document.querySelectorAll(arguments[0])]"
                ".map((e) => [e.dataset.nodeId, e.dataset.state]))",
                selector,
            )
            return found

        def node_states(d: Any) -> dict[str, str]:
            return states(d, "#nodes tbody tr[data-node-id]")

        want = {a.node_id: "self", b.node_id: "up", c.node_id: "up"}
        wait.until(lambda d: node_states(d) == want)

        def rollout(d: Any) -> dict[str, str]:
            return states(d, '#matrix tr[data-module="counter"] td[data-state]')

        wait.until(
            lambda d: rollout(d) == {a.node_id: "active", b.node_id: "active", c.node_id: "refused"}
        )
        # the token is in this tab's sessionStorage only, never in the URL
        assert a.token not in driver.current_url
        assert driver.execute_script("return document.cookie") == ""

        assert b.stop() == 0, b.log()
        wait.until(lambda d: node_states(d).get(b.node_id) in ("down", "stale"))
        assert node_states(driver)[a.node_id] == "self"
        wait.until(lambda d: "2 of 3 nodes up" in d.find_element(By.ID, "cluster-summary").text)
        shot = tmp_path / "dashboard.png"
        assert driver.save_screenshot(str(shot))
        keep = os.environ.get("EDGESTATE_DASHBOARD_SCREENSHOT")
        if keep:
            shutil.copy(shot, keep)
    finally:
        driver.quit()
