"""The chat page at /ui: served only when asked for, one self-contained file, left out of
artifacts unless the build asks, and used in a real headless browser (Debian's chromium,
driven by selenium through /usr/bin/chromedriver) against ``agentpack run --ui``,
``app.run(web_ui=True)``, ``agentpack emulate --ui`` and ``agentpack ui`` for a local deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import zipfile
from urllib.parse import quote
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from agentpack import AgentApp
from agentpack.headers import affinity_key
from tests.support import CLI, BackgroundStream, check_protocol, cli_env, copy_project, free_port, in_process, user_body, wait_until, http

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: The agent the browser talks to: it thinks, calls a tool, then answers token by token, and
#: says which turn of which session it is answering (so the test sees what the server saw).
UI_APP = '''
import asyncio

from agentpack import AgentApp, Msg

app = AgentApp(app_name="UI test agent · 测试 🤖", debug=True)  # debug: the failed turn shows the exception's text
TURNS = {}
AFFINITY = {}  # session -> the X-Agentpack-Affinity values its requests carried (runs and stops)


@app.middleware("http")
async def note_affinity(request, call_next):
    session = request.headers.get("x-agentpack-session-id")
    if session:
        AFFINITY.setdefault(session, []).append(request.headers.get("x-agentpack-affinity"))
    return await call_next(request)


@app.endpoint("/affinity", methods=["GET"])
async def affinity():
    return AFFINITY


ANSWER = ["你好", "，", "世界", "！", " 🌍", " Tokens", " arrive", " one", " by", " one", "."]


@app.query(framework="agentscope")
async def answer(self, msgs, request, **kwargs):
    question = request.input[-1].text() if request.input else ""
    session = request.session_id
    TURNS[session] = TURNS.get(session, 0) + 1
    if question.startswith("fail"):
        raise ValueError("boom — 失败了")
    if question.startswith("long"):
        story = Msg("Friday", "", "assistant")
        for i in range(400):
            story.content += f"word{i} "
            yield story, False
            await asyncio.sleep(0.05)
        yield story, True
        return
    thinking = Msg("Friday", [{"type": "thinking", "thinking": ""}], "assistant")
    for piece in ["The user greets me. ", "想一想: ", "I should check the weather."]:
        thinking.content[0]["thinking"] += piece
        yield thinking, False
        await asyncio.sleep(0.05)
    yield thinking, True
    call = Msg("Friday", [{"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "杭州"}}], "assistant")
    yield call, True
    result = Msg("system", [{"type": "tool_result", "id": "call_1", "name": "get_weather", "output": "晴 25°C ☀️"}], "system")
    yield result, True
    reply = Msg("Friday", "", "assistant")
    for token in ANSWER + [f" (turn {TURNS[session]} of session {session})"]:
        reply.content += token
        yield reply, False
        await asyncio.sleep(0.08)
    yield reply, True
'''

FIRST_ANSWER = "你好，世界！ 🌍 Tokens arrive one by one."


# -- without a browser ---------------------------------------------------------------------------
def make_app(**kwargs: Any) -> AgentApp:
    app = AgentApp(app_name="plain", **kwargs)

    @app.query(framework="text")
    async def answer(self, msgs, request):
        yield "hi"

    return app


def test_a_plain_app_has_no_chat_page(monkeypatch):
    monkeypatch.delenv("AGENTPACK_UI", raising=False)

    async def check() -> None:
        async with in_process(make_app()) as client:
            assert (await client.get("/ui")).status_code == 404
            assert "ui" not in (await client.get("/")).json()["endpoints"]

    asyncio.run(check())
    # nothing of the page is imported by an app that does not ask for it
    code = textwrap.dedent(
        """
        import sys
        from agentpack import AgentApp
        app = AgentApp()
        @app.query(framework="text")
        async def answer(self, msgs, request):
            yield "hi"
        print(sorted(m for m in sys.modules if m.startswith("agentpack.frontends.ui")))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "AGENTPACK_UI"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_switch_serves_one_self_contained_page(monkeypatch):
    monkeypatch.setenv("AGENTPACK_UI", "1")

    async def check(app: AgentApp) -> str:
        async with in_process(app) as client:
            page = await client.get("/ui")
            assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
            assert (await client.get("/")).json()["endpoints"]["ui"] == "/ui"
            assert (await client.get("/ui/")).status_code in (200, 307)  # a trailing slash finds it too
            return page.text

    html = asyncio.run(check(make_app()))
    # one file, nothing from elsewhere: no external scripts, styles, fonts or images, and a policy that forbids them
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "the page loads nothing from another origin"
    assert "@import" not in html and "@font-face" not in html
    assert "default-src 'none'" in html and "connect-src 'self'" in html
    assert '<meta charset="utf-8">' in html
    # the switch works whatever protocols the app serves
    asyncio.run(check(make_app(protocol_adapters=[])))


def test_the_page_is_a_front_end_adapter_an_app_can_list(monkeypatch):
    monkeypatch.delenv("AGENTPACK_UI", raising=False)
    from agentpack.frontends.ui.adapter import ChatPageAdapter

    async def check() -> None:
        async with in_process(make_app(protocol_adapters=[ChatPageAdapter(path="/chat")])) as client:
            assert (await client.get("/chat")).status_code == 200
            assert (await client.get("/ui")).status_code == 404
            assert (await client.get("/")).json()["endpoints"]["ui"] == "/chat"

    asyncio.run(check())


# -- the browser -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[Any]:
    """Debian's chromium, headless, with a fresh profile and nothing that reaches the network."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: install the browser (Debian: apt-get install -y chromium chromium-driver; .ci/run does)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install -e '.[test]' (or pip install selenium)")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never try to download a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--window-size=1100,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


#: The last turn as the page shows it.
SNAPSHOT = """
const turns = document.querySelectorAll('#transcript .turn');
const turn = turns[turns.length - 1];
const pick = (kind) => turn ? [...turn.querySelectorAll('[data-kind="' + kind + '"]')].map((n) => ({
    text: n.textContent, status: n.dataset.status, summary: n.querySelector('summary') ? n.querySelector('summary').textContent : null})) : [];
return {
  turns: turns.length,
  status: turn ? turn.querySelector('.turn-status').dataset.status : null,
  status_text: turn ? turn.querySelector('.turn-status').textContent : null,
  user: turn ? turn.querySelector('.user').textContent : null,
  answer: pick('answer'), reasoning: pick('reasoning'), calls: pick('tool-call'), results: pick('tool-result'), errors: pick('error'),
  session: document.getElementById('session').dataset.sessionId,
  send_disabled: document.getElementById('send').disabled,
  stop_disabled: document.getElementById('stop').disabled,
};
"""

#: Records every length the streaming answer of the turn about to start reaches, and when.
WATCH_GROWTH = """
window.__growth = [];
const transcript = document.getElementById('transcript');
const before = transcript.querySelectorAll('.turn').length;
new MutationObserver(() => {
  const turns = transcript.querySelectorAll('.turn');
  if (turns.length <= before) return;
  const answer = turns[turns.length - 1].querySelector('[data-kind="answer"]');
  if (!answer) return;
  const seen = window.__growth, length = answer.textContent.length;
  if (!seen.length || seen[seen.length - 1][1] !== length) seen.push([performance.now(), length]);
}).observe(transcript, {subtree: true, childList: true, characterData: true});
"""


class ChatPage:
    """The page in the browser, read through the DOM."""

    def __init__(self, driver: Any, url: str) -> None:
        self.driver = driver
        driver.get(url)
        self.wait(lambda: driver.execute_script("return document.body.dataset.ready === 'true'"), 10, "the page did not start")

    def wait(self, condition: Any, timeout: float, message: Any) -> Any:
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.02).until(lambda _: condition())
        except TimeoutException:
            pytest.fail(f"{message() if callable(message) else message} (waited {timeout}s); the page shows {self.turn()}")

    def turn(self) -> dict:
        return self.driver.execute_script(SNAPSHOT)

    def send(self, text: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        box = self.driver.find_element(By.ID, "input")
        box.send_keys(text)
        box.send_keys(Keys.ENTER)  # Enter sends

    def click(self, element_id: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.ID, element_id).click()

    def answer(self) -> str:
        return "".join(a["text"] for a in self.turn()["answer"])

    def ended(self, status: str, timeout: float = 15) -> dict:
        self.wait(lambda: self.turn()["status"] == status, timeout, f"the turn did not end {status}")
        return self.turn()

    def screenshot(self, path: Path) -> Path:
        assert self.driver.save_screenshot(str(path))
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, f"{path} is not a PNG of the page"
        print(f"screenshot of the chat page: {path}")
        return path


def serve_cli(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, str, Path]:
    """``agentpack run APP --ui`` on a free port; its URL once it answers."""
    app_file = tmp_path / "ui_app.py"
    app_file.write_text(UI_APP)
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("w") as err:
        process = subprocess.Popen([sys.executable, "-m", "agentpack", "run", str(app_file), "--port", str(port), "--ui", *args],
                                   cwd=tmp_path, env=cli_env(), stdout=err, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: process.poll() is not None or _answers(url), 30, lambda: f"agentpack run did not serve: {log.read_text()}")
    assert process.poll() is None, log.read_text()
    return process, url, log


def _answers(url: str) -> bool:
    try:
        return http.get(f"{url}/readiness", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@contextlib.contextmanager
def ended(process: subprocess.Popen) -> Iterator[None]:
    try:
        yield
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.mark.integration
def test_chat_streams_thinks_calls_tools_stops_and_keeps_its_session(browser, tmp_path):
    server, url, log = serve_cli(tmp_path)
    with ended(server):
        assert f"chat page at {url}/ui" in log.read_text()
        page = ChatPage(browser, f"{url}/ui")
        assert browser.title == "UI test agent · 测试 🤖 · chat", "the app's name (Chinese and emoji) is the title"

        # 1. the first turn: tokens arrive one by one, apart from the reasoning and the tool call
        browser.execute_script(WATCH_GROWTH)
        page.send("你好，agent")
        page.wait(lambda: page.turn()["status"] == "streaming" and page.answer().startswith("你好"), 10, "no token arrived")
        assert not page.answer().startswith(FIRST_ANSWER), "a token is on screen before the answer is whole"
        turn = page.ended("completed")
        growth = browser.execute_script("return window.__growth")
        lengths = [length for _, length in growth]
        assert lengths == sorted(set(lengths)) and len(lengths) >= 8, f"the answer grew in {len(lengths)} steps: {growth}"
        assert growth[-1][0] - growth[0][0] > 400, f"the answer appeared at once, not over time: {growth}"
        session = turn["session"]
        assert session and turn["user"] == "你好，agent"
        [answer] = turn["answer"]
        assert answer["text"] == f"{FIRST_ANSWER} (turn 1 of session {session})" and answer["status"] == "completed"
        [reasoning] = turn["reasoning"]
        assert "想一想" in reasoning["text"] and "Thinking" in reasoning["summary"]
        [call], [result] = turn["calls"], turn["results"]
        assert "get_weather" in call["summary"] and "杭州" in call["text"]
        assert "get_weather" in result["summary"] and "晴 25°C ☀️" in result["text"]
        assert "想一想" not in answer["text"] and "get_weather" not in answer["text"], "reasoning and tools stay out of the answer"
        assert turn["stop_disabled"] and not turn["send_disabled"]
        page.screenshot(tmp_path / "chat-first-turn.png")

        # 2. Stop mid-answer: the run is stopped on the server and the page shows it canceled
        page.send("long story please")
        page.wait(lambda: page.answer().count("word") >= 3, 10, "the long answer did not start")
        assert not page.turn()["stop_disabled"]
        page.click("stop")
        turn = page.ended("canceled", timeout=10)
        [answer] = turn["answer"]
        assert answer["status"] == "incomplete" and answer["text"].startswith("word0 word1 word2") and "word399" not in answer["text"]
        assert "Stopped" in turn["status_text"] and turn["stop_disabled"] and not turn["send_disabled"]
        assert turn["session"] == session
        page.screenshot(tmp_path / "chat-stopped.png")

        # 3. the next turn goes to the same session, which the stop released
        page.send("hello again")
        turn = page.ended("completed")
        assert turn["answer"][0]["text"].endswith(f"(turn 3 of session {session})")
        # the page pinned the session's runs and its stop with the same affinity id as agentpack's other clients
        seen = http.get(f"{url}/affinity").json()[quote(session, safe="")]
        assert len(seen) >= 3 and set(seen) == {affinity_key(session, session)}, seen

        # 4. an HTTP error is shown: another client is running this session (409)
        other = BackgroundStream(url, user_body("long", session_id=session)).begin()
        page.send("one more")
        turn = page.ended("error")
        assert "HTTP 409" in turn["errors"][0]["text"], turn
        assert http.post(f"{url}/process/stop", json={"session_id": session}).json()["stopped"] is True
        assert check_protocol(other.result())["status"] == "canceled"

        # 5. a new session: the transcript clears, the next message gets a new session id
        page.click("new-session")
        assert page.turn()["turns"] == 0 and page.turn()["session"] == ""
        page.send("fail now")
        turn = page.ended("failed")
        assert "boom — 失败了" in turn["errors"][0]["text"]
        new_session = turn["session"]
        assert new_session and new_session != session
        page.send("hello")
        turn = page.ended("completed")
        assert turn["answer"][0]["text"].endswith(f"(turn 2 of session {new_session})")
        page.screenshot(tmp_path / "chat-new-session.png")


@pytest.mark.integration
def test_run_web_ui_true_serves_the_page_for_a_moved_endpoint(browser, tmp_path):
    port = free_port()
    script = tmp_path / "web_ui_app.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio
            from agentpack import AgentApp

            agent_app = AgentApp(app_name="Friday")

            @agent_app.query(framework="text")
            async def query_func(self, msgs, request=None, **kwargs):
                for word in ["Hi", " from", " the", " moved", " route"]:
                    yield word
                    await asyncio.sleep(0.02)

            agent_app.run(host="127.0.0.1", port={port}, web_ui=True, endpoint_path="/agent")
            """
        )
    )
    log = tmp_path / "log.txt"
    with log.open("w") as err:
        process = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdout=err, stderr=subprocess.STDOUT,
                                   env={**cli_env(), "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    with ended(process):
        wait_until(lambda: process.poll() is not None or _answers(url), 30, lambda: f"app.run() did not serve: {log.read_text()}")
        assert f"chat page at {url}/ui" in log.read_text()
        page = ChatPage(browser, f"{url}/ui")
        page.send("hi")
        assert page.ended("completed")["answer"][0]["text"] == "Hi from the moved route", "the page found /agent through GET /"


# -- artifacts and the emulator -------------------------------------------------------------------
def _ui_entries(artifact: str) -> list[str]:
    with zipfile.ZipFile(artifact) as archive:
        return sorted(name for name in archive.namelist() if "agentpack/frontends/ui/" in name)


@pytest.mark.integration
def test_artifacts_carry_the_page_only_when_the_build_asks_and_stay_reproducible(tmp_path):
    from agentpack.builders.build import build
    from agentpack.targets import get_target

    project = tmp_path / "one" / "emulated"
    shutil.copytree(ROOT / "tests" / "projects" / "emulated", project)
    plain = build(project, "fc", out_dir=tmp_path / "plain")
    assert _ui_entries(plain.artifact) == [] and plain.ui is False
    with_ui = build(project, "fc", out_dir=tmp_path / "ui", ui=True)
    names = _ui_entries(with_ui.artifact)
    deps = f"{get_target('fc').deps_dir}/" if get_target("fc").deps_dir else ""
    assert f"{deps}agentpack/frontends/ui/chat.html" in names and f"{deps}agentpack/frontends/ui/adapter.py" in names, names
    with zipfile.ZipFile(with_ui.artifact) as archive:
        assert json.loads(archive.read("agentpack-manifest.json"))["ui"] is True
        assert archive.read(f"{deps}agentpack/frontends/ui/chat.html") == (ROOT / "agentpack" / "frontends" / "ui" / "chat.html").read_bytes()
    # ui = true in agentpack.toml asks the same, and a rebuild from elsewhere is byte-identical
    other = tmp_path / "two" / "emulated"
    shutil.copytree(project, other, ignore=shutil.ignore_patterns("dist"))
    (other / "agentpack.toml").write_text((other / "agentpack.toml").read_text().replace('python = "3.12"', 'python = "3.12"\nui = true'))
    for path in other.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    again = build(other, "fc", out_dir=tmp_path / "ui-again")
    assert again.sha256 == with_ui.sha256 and Path(again.artifact).read_bytes() == Path(with_ui.artifact).read_bytes()
    rebuilt_plain = build(other, "fc", out_dir=tmp_path / "plain-again", ui=False)
    assert rebuilt_plain.sha256 == plain.sha256


@pytest.mark.integration
def test_emulate_ui_serves_the_page_from_the_artifact(browser, tmp_path):
    from agentpack.builders.build import build
    from agentpack.emulators.emulation import EmulationError, start

    project = tmp_path / "emulated"
    shutil.copytree(ROOT / "tests" / "projects" / "emulated", project)
    cli = CLI(project, cli_env())
    running = cli.popen("emulate", ".", "--target", "fc", "--ui", "--port", "0", "--json")
    with ended(running):
        line = running.stdout.readline()
        assert line, running.stderr.read()
        described = json.loads(line)
        assert described["ui"] == f"{described['url']}/ui"
        page = ChatPage(browser, described["ui"])
        page.send("count please")
        assert page.ended("completed")["answer"][0]["text"] == "".join(f"word{i} " for i in range(10))
        seen = http.get(f"{described['url']}/whoami").json()
        assert seen["env"]["AGENTPACK_UI"] == "1", "the emulator's instances are asked for the page"

    # an artifact built without the page: --ui says how to get one; the switch alone serves on without /ui
    plain = build(project, "fc", out_dir=tmp_path / "plain", ui=False)
    with pytest.raises(EmulationError, match="built without the chat page"):
        start(Path(plain.artifact), "fc", ui=True)
    with start(Path(plain.artifact), "fc", port=0, env={"AGENTPACK_UI": "1"}, log=lambda line: None) as emulation:
        assert http.get(f"{emulation.url}/ui").status_code == 404
        assert "ui" not in http.get(f"{emulation.url}/").json()["endpoints"]
        with http.stream("POST", f"{emulation.url}/process", json=user_body("hi"), timeout=30) as response:
            assert response.status_code == 200


# -- a deployed agent -------------------------------------------------------------------------------
class SignatureRequired:
    """An ASGI wrapper that answers 403 unless a POST carries a valid ACS3 signature of its exact
    bytes, as a Function Compute trigger with function authentication does."""

    def __init__(self, app: Any, secret: str) -> None:
        self.app = app
        self.secret = secret
        self.verified = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if not self.valid(scope, body):
            await send({"type": "http.response.start", "status": 403, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": b'{"detail": "signature mismatch"}'})
            return
        self.verified += 1
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def valid(self, scope: dict, body: bytes) -> bool:
        from urllib.parse import parse_qsl

        from tests.standins.acs import canonical_request, sign

        headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        authorization = headers.get("authorization", "")
        if not authorization.startswith("ACS3-HMAC-SHA256 ") or headers.get("x-acs-content-sha256") != hashlib.sha256(body).hexdigest():
            return False
        signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
        canonical = canonical_request(scope["method"], scope["raw_path"].decode(), parse_qsl(scope["query_string"].decode()),
                                      {name: [headers[name]] for name in signed}, signed, headers["x-acs-content-sha256"])
        return authorization.endswith(f"Signature={sign(self.secret, canonical)}")


def test_the_relay_adds_the_affinity_id_a_page_without_crypto_subtle_could_not():
    from agentpack.cli.ui_view import affinity_for

    named = {"x-agentpack-session-id": quote("会话-1", safe=""), "x-agentpack-user-id": quote("用户 🌍", safe="")}
    assert affinity_for(named) == {"X-Agentpack-Affinity": affinity_key("会话-1", "用户 🌍")}
    assert affinity_for({"x-agentpack-session-id": "s"}) == {"X-Agentpack-Affinity": affinity_key("s", "s")}
    assert affinity_for({**named, "x-agentpack-affinity": "abc"}) == {}, "the page's own value is kept"
    assert affinity_for({}) == {}, "no session, nothing to pin"


def test_the_relay_sends_the_deployments_key_when_the_page_has_none(serve):
    from agentpack.cli.ui_view import relay_app

    agent = AgentApp(app_name="keyed", api_keys=["k-deployment-x", "k-page"])

    @agent.query(framework="text")
    async def answer(self, msgs, request):
        yield "hi"

    upstream = serve(agent)
    paths = {"process": "/process", "stop": "/process/stop"}
    page = serve(relay_app(upstream, paths, None, "fc/keyed", api_key="k-deployment-x"))
    assert http.post(f"{upstream}/process", json=user_body()).status_code == 401, "the deployment wants a key"
    with http.stream("POST", f"{page}/process", json=user_body("你好"), timeout=30) as answered:
        assert answered.status_code == 200
        events = [json.loads(line[6:]) for line in answered.iter_lines() if line.startswith("data: ")]
    assert check_protocol(events)["status"] == "completed"
    # the page's own key wins: a wrong one is refused, not replaced by the relay's
    refused = http.post(f"{page}/process", json=user_body(), headers={"Authorization": "Bearer wrong"}, timeout=30)
    assert refused.status_code == 401
    keyless = serve(relay_app(upstream, paths, None, "fc/keyed"))
    assert http.post(f"{keyless}/process", json=user_body(), timeout=30).status_code == 401


def test_the_relay_signs_what_it_forwards_and_streams_it_back(serve):
    from agentpack.cli.ui_view import relay_app
    from agentpack.deployers.clients.signing import AcsSignatureAuth

    agent = AgentApp(app_name="signed")

    @agent.query(framework="text")
    async def answer(self, msgs, request):
        for i in range(1000):  # 20 s: only a stop or a client that leaves ends it within the test
            yield f"{i} "
            await asyncio.sleep(0.02)

    guarded = SignatureRequired(agent, "the-secret")
    upstream = serve(guarded)
    paths = {"process": "/process", "stop": "/process/stop"}
    assert http.post(f"{upstream}/process", json=user_body()).status_code == 403, "the deployment refuses unsigned requests"

    page = serve(relay_app(upstream, paths, AcsSignatureAuth("LTAI-id", "the-secret"), "fc/signed"))
    assert http.get(f"{page}/ui").headers["content-type"] == "text/html; charset=utf-8"
    assert http.get(f"{page}/").json()["endpoints"] == {"process": "/process", "stop": "/process/stop", "ui": "/ui"}
    assert http.get(f"{page}/", headers={"Accept": "text/html"}).headers["location"] == "/ui"
    events: list[dict] = []
    stopped = None
    with http.stream("POST", f"{page}/process", json=user_body("数 🌍", session_id="会话-1"), timeout=30) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-agentpack-session-id"] == "%E4%BC%9A%E8%AF%9D-1"
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if stopped is None and sum(1 for e in events if e["object"] == "content") == 3:  # mid-stream: stop it through the relay
                    stopped = http.post(f"{page}/process/stop", json={"session_id": "会话-1", "user_id": "会话-1"}, timeout=30)
                    assert stopped.json()["stopped"] is True, stopped.text
    assert check_protocol(events)["status"] == "canceled"
    assert guarded.verified >= 2, "the stream and the stop both went out signed"

    # a page that goes away closes the forwarded stream: the run ends and frees its session
    with http.stream("POST", f"{page}/process", json=user_body("x", session_id="会话-2"), timeout=30) as response:
        contents = 0
        for line in response.iter_lines():
            contents += '"object":"content"' in line
            if contents == 3:
                break

    def no_run() -> bool:
        return http.post(f"{page}/process/stop", json={"session_id": "会话-2"}, timeout=30).json()["stopped"] is False

    wait_until(no_run, 5, "the run went on after the page left")

    unsigned = serve(relay_app(upstream, paths, None, "fc/signed"))
    refused = http.post(f"{unsigned}/process", json=user_body(), timeout=30)
    assert refused.status_code == 403 and refused.json() == {"detail": "signature mismatch"}, "the page shows the deployment's refusal"
    nowhere = serve(relay_app(f"http://127.0.0.1:{free_port()}", paths, None))
    gone = http.post(f"{nowhere}/process", json=user_body(), timeout=30)
    assert gone.status_code == 502 and "could not reach" in gone.json()["detail"]


@pytest.mark.integration
def test_agentpack_ui_opens_the_page_for_a_local_deployment(browser, tmp_path):
    project = copy_project(tmp_path)
    config = project / "agentpack.toml"
    config.write_text(config.read_text().replace("[targets.local]\n", f"[targets.local]\nport = {free_port()}\n"))
    cli = CLI(project, cli_env(DEPLOYED_SECRET="s3cret"))
    deployed = cli.json("deploy", "--target", "local")
    try:
        relay = cli.popen("ui", "deployed", "--port", "0", "--json")
        with ended(relay):
            line = relay.stdout.readline()
            assert line, relay.stderr.read()
            opened = json.loads(line)
            assert opened["upstream"] == deployed["url"].rstrip("/") and opened["signed"] is False
            page = ChatPage(browser, opened["ui"])
            assert browser.title == "local/deployed · chat"
            page.send("count 200")
            page.wait(lambda: "3 " in page.answer(), 15, "the deployment's answer did not stream through the page")
            page.click("stop")
            turn = page.ended("canceled")
            assert "199" not in turn["answer"][0]["text"]
            page.send("hello 世界")
            turn = page.ended("completed")
            assert turn["answer"][0]["text"].strip() == "v1: hello 世界" and turn["session"]
    finally:
        cli.run("destroy", "deployed", "--yes")


def test_agentpack_ui_names_the_fix_for_an_unknown_deployment(tmp_path):
    done = CLI(tmp_path, cli_env()).run("ui", "nothing-here", "--port", "0")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no deployment named 'nothing-here'" in done.stderr


def test_the_switch_has_one_name_everywhere():
    from agentpack.app.protocols import UI_ENV as app_side
    from agentpack.cli.ui_view import UI_ENV as cli_side
    from agentpack.emulators.emulation import UI_ENV as emulator_side

    assert app_side == cli_side == emulator_side == "AGENTPACK_UI"
