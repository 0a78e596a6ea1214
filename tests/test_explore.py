"""The explorer page: built from a tiny run, self-contained, its audio decodes, and it works in headless Chromium."""

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_timbre.audio.frontend import FrontendConfig, librosa_log_mel
from keras_timbre.audio import griffin_lim
from keras_timbre.explorer import maps as explore_maps

FRONTEND = FrontendConfig(n_mels=32, duration=0.5)
NOTES = 12
MORPH_NOTES = 3
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from keras_timbre.data import make_synthetic_dataset
    from keras_timbre.training.trainer import train

    root = tmp_path_factory.mktemp("explore")
    make_synthetic_dataset(root / "data", notes=NOTES)
    train(
        root / "run",
        data=root / "data",
        epochs=1,
        latent_dim=4,
        frontend=FRONTEND,
        model_kwargs={"filters": (4, 8)},
        verbose=0,
    )
    return root


def _explore(root: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "keras_timbre.cli", "explore", str(root / "run"), "--data", str(root / "data")]
    return subprocess.run(
        [*command, "--out", str(out), *extra], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def page(tiny_run):
    out = tiny_run / "explore.html"
    result = _explore(tiny_run, out, "--morph-notes", str(MORPH_NOTES))
    assert result.returncode == 0, result.stderr
    assert f"{NOTES} notes, 3 morphs" in result.stdout
    return out


def _payload(page: Path) -> dict:
    match = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', page.read_text(), re.S)
    return json.loads(match.group(1))


def _decode(clip: str) -> np.ndarray:
    import soundfile as sf

    audio, rate = sf.read(io.BytesIO(base64.b64decode(clip)), dtype="float32")
    assert rate == FRONTEND.sample_rate
    return audio


def test_page_is_self_contained(page):
    text = page.read_text()
    assert "<script src" not in text and "<link" not in text
    # The only URL is the SVG namespace name, which no browser fetches.
    assert set(re.findall(r"https?://[^\s\"']+", text)) == {"http://www.w3.org/2000/svg"}


def test_payload_has_every_note_with_labels_maps_and_audio(page, tiny_run):
    from keras_timbre.data import read_notes

    payload = _payload(page)
    names = sorted(Path(r.path).name for r in read_notes(tiny_run / "data"))
    assert sorted(n["name"] for n in payload["notes"]) == names
    bass = next(n for n in payload["notes"] if n["name"].startswith("bass_"))
    assert bass["family"] == "bass" and bass["source"] in ("acoustic", "electronic", "synthetic")
    for points in payload["maps"].values():
        points = np.array(points)
        assert points.shape == (NOTES, 2) and points.min() >= 0.0 and points.max() <= 1.0
    for key in ("audio", "recon_audio", "thumb", "recon_thumb"):
        assert len(payload[key]) == NOTES
    clip = _decode(payload["recon_audio"][0])
    assert abs(len(clip) / FRONTEND.sample_rate - FRONTEND.duration) < 0.1 and np.abs(clip).max() > 0.01


def test_morphs_join_every_pair_of_anchor_notes(page):
    payload = _payload(page)
    anchors = payload["anchors"]
    assert len(anchors) == MORPH_NOTES
    families = [payload["notes"][i]["family"] for i in anchors]
    assert len(set(families)) == MORPH_NOTES  # different families first
    pairs = {(m["a"], m["b"]) for m in payload["morphs"]}
    assert pairs == {(a, b) for i, a in enumerate(anchors) for b in anchors[i + 1 :]}
    for morph in payload["morphs"]:
        assert len(morph["clips"]) == len(morph["thumbs"]) == 5
        first, last = (np.frombuffer(base64.b64decode(morph["thumbs"][k]), np.uint8) for k in (0, -1))
        assert not np.array_equal(first, last)  # the ends decode two different codes


def test_borrowed_phase_inverse_beats_random_phase_and_griffin_lim():
    frontend = FrontendConfig(n_mels=128, duration=0.5)
    t = np.arange(frontend.num_samples) / frontend.sample_rate
    note = (0.5 * np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t)).astype("float32")
    target = librosa_log_mel(note, frontend)

    def error_db(audio):  # mean |dB| error where the note has energy
        return float(np.mean(np.abs(librosa_log_mel(audio, frontend) - target)[target > -40]))

    own = error_db(griffin_lim.borrowed_phase_audio(target[None], note[None], frontend)[0])
    noise = np.random.default_rng(0).normal(size=(1, len(t)))
    random_phase = error_db(griffin_lim.borrowed_phase_audio(target[None], noise, frontend)[0])
    iterative = error_db(griffin_lim.griffin_lim_audio(target[None], frontend, n_iter=16)[0])
    assert own < 5.0  # measured 4.3 dB; random phase 9.4, Griffin-Lim (16) 9.1
    assert own < 0.6 * random_phase and own < 0.6 * iterative


def test_maps_of_a_one_dimensional_code():
    maps = explore_maps.note_maps(np.arange(6, dtype=float)[:, None])
    assert maps["pca"].shape == (6, 2) and maps["tsne"].shape == (6, 2)
    assert np.isclose(maps["pca"][:, 0].max() - maps["pca"][:, 0].min(), 1.0)


def test_out_that_is_a_directory_exits_2(tiny_run):
    result = _explore(tiny_run, tiny_run)
    assert result.returncode == 2
    assert f"--out {tiny_run} is a directory" in result.stderr


def test_missing_run_exits_2(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_timbre.cli",
            "explore",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "x.html"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and f"Run directory {tmp_path / 'nope'} does not exist" in result.stderr


@pytest.fixture
def browser():
    selenium = pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver)")
    options = selenium.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--autoplay-policy=no-user-gesture-required")
    options.add_argument("--window-size=1300,760")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = selenium.Chrome(service=selenium.ChromeService(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _record_playing(driver) -> None:
    """Every 'playing' event of the page's audio elements is pushed, by element name, to `window.played`."""
    driver.execute_script(
        "window.played = [];"
        "for (const [name, element] of Object.entries(explorer.audio))"
        "  element.addEventListener('playing', () => played.push(name));"
    )


def _started(driver, element: str) -> bool:
    """Waits up to 5 s for `explorer.audio[element]` to start playing."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 5).until(lambda d: d.execute_script("return played.includes(arguments[0])", element))


@pytest.mark.slow
def test_page_in_headless_chromium(page, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(page.resolve().as_uri())
    circles = browser.find_elements(By.CSS_SELECTOR, "circle.note")
    assert len(circles) == NOTES
    _record_playing(browser)
    circles[1].click()
    assert _started(browser, "original")
    name = browser.find_element(By.ID, "note-name").text
    clicked = int(circles[1].get_attribute("data-index"))
    assert name == browser.execute_script("return explorer.data.notes[arguments[0]].name", clicked)
    assert _started(browser, "reconstruction")  # once the original ends

    anchors = browser.find_elements(By.CSS_SELECTOR, "circle.anchor")
    assert len(anchors) == MORPH_NOTES
    for anchor in anchors[:2]:
        ActionChains(browser).key_down(Keys.SHIFT).click(anchor).key_up(Keys.SHIFT).perform()
    assert len(browser.find_elements(By.CSS_SELECTOR, "#morph-strip canvas")) == 5
    browser.find_element(By.ID, "morph-play").click()
    assert _started(browser, "morph")

    browser.find_element(By.CSS_SELECTOR, "#map-choice option[value=pca]").click()
    x = float(circles[0].get_attribute("cx"))
    index = int(circles[0].get_attribute("data-index"))
    expected = 20 + browser.execute_script("return explorer.data.maps.pca[arguments[0]][0]", index) * 580
    assert abs(x - expected) < 0.1

    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    assert browser.save_screenshot(str(tmp_path / "explorer.png"))
    assert (tmp_path / "explorer.png").read_bytes()[:4] == b"\x89PNG"
