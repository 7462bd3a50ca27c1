"""The demo page (espnet_ext.decode.demo) over the tiny trained system (conftest.py's tiny_exp): its API
answers what the transcriber says and names a bad upload, the page loads nothing from the internet, and
in headless Chromium (Debian's chromium + chromium-driver, which install.sh installs) a user uploads a
clip and reads the transcript and the language off the page."""
import json
import re
import threading
import urllib.error
import urllib.request

import pytest
import soundfile as sf

from espnet_ext.decode.demo import make_server
from decode_helpers import headless_chromium, needs_chromium, random_audio


@pytest.fixture(scope="module")
def server(transcriber):
    httpd = make_server(transcriber, "tiny", port=0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "clip.wav"
    sf.write(str(path), random_audio(2.0, 5), 16000)
    return path


def post(url: str, body: bytes, name: str):
    request = urllib.request.Request(url + "/api/transcribe", data=body, headers={"X-Filename": name})
    try:
        with urllib.request.urlopen(request) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_api_answers_what_the_transcriber_says(server, clip, transcriber):
    status, result = post(server, clip.read_bytes(), "clip.wav")
    expected = transcriber.transcribe_file(clip)
    assert status == 200 and result["file"] == "clip.wav"
    assert result["text"] == expected.text and result["lang"] == expected.lang
    assert len(result["timeline"]) == 20 and len(result["timeline"][0]) == len(result["languages"])  # 2 s / 0.1 s


def test_a_bad_upload_gets_a_one_line_error_naming_the_file(server):
    status, result = post(server, b"not audio at all", "notes.wav")
    assert status == 400 and "notes.wav" in result["error"] and "\n" not in result["error"]


def test_the_page_fetches_nothing_from_outside(server):
    with urllib.request.urlopen(server + "/") as reply:
        html = reply.read().decode()
    assert "<svg" in html and 'id="transcript"' in html
    assert re.findall(r"https?://[^\"' ]+", html) == ["http://www.w3.org/2000/svg"]  # a namespace, not a fetch


@needs_chromium
def test_upload_in_headless_chromium_shows_transcript_and_language(server, clip, transcriber):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with headless_chromium() as driver:
        driver.get(server + "/")
        driver.find_element(By.ID, "file").send_keys(str(clip))
        driver.find_element(By.ID, "send").click()
        WebDriverWait(driver, 120).until(lambda d: d.find_element(By.ID, "status").text.startswith("done"))
        expected = transcriber.transcribe_file(clip)
        assert expected.text  # something to read (the tiny random model always says something)
        assert driver.find_element(By.ID, "transcript").text == expected.text
        assert driver.find_element(By.ID, "lang").text == expected.lang
        rows = driver.find_elements(By.CSS_SELECTOR, "#segments tr")
        assert len(rows) == len(expected.segments)
        assert rows[0].find_elements(By.TAG_NAME, "td")[4].text == expected.segments[0].text
        lines = driver.find_elements(By.CSS_SELECTOR, "#timeline polyline")
        assert len(lines) == len(expected.languages)  # one posterior curve per language
