"""The built-in default data: synthetic instrument notes in NSynth's jsonwav format.

`make_synthetic_dataset` writes `examples.json` plus `audio/*.wav` (16 kHz,
16-bit, 4 s: the note held 3 s, then released) with NSynth's names, so every
reader, pipeline and command runs on a fresh machine with nothing downloaded.
Ten NSynth families, each with what makes its timbre:

| family   | spectrum                                   | envelope / cues                          |
|----------|--------------------------------------------|------------------------------------------|
| bass     | saw, steep low-pass, filter sweep          | fast attack, decay to sustain            |
| brass    | rich, formant near 1.2 kHz, brighter loud  | 60-100 ms attack with pitch scoop        |
| flute    | near-sinusoidal                            | strong breath noise, slow attack, vibrato|
| guitar   | plucked comb, slightly inharmonic          | noise-burst attack, per-partial decay    |
| keyboard | stiff-string inharmonic, detuned pair      | hammer thump, two-stage decay            |
| mallet   | inharmonic bar modes (1 : 3.9 : 9.5)       | click, fast decay                        |
| organ    | drawbar harmonics                          | instant on/off, tremolo                  |
| reed     | odd harmonics, weak even                   | 40 ms attack, light noise                |
| string   | saw with body resonances                   | slow bow attack, bow noise, vibrato      |
| vocal    | glottal harmonics through vowel formants   | vibrato, breath                          |

Velocity sets loudness and brightness. Everything is numpy, seeded per note:
the same seed writes byte-identical files.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np

from keras_timbre import atomic
from keras_timbre.outputs import check_output_folder
from keras_timbre.data.readers import NoteRecord
from keras_timbre.data.readers import example_entry

SAMPLE_RATE = 16000
DURATION = 4.0
NOTE_OFF = 3.0
VELOCITIES = (25, 50, 75, 100, 127)
# 10 families x 4 instruments x 12 notes: trains and evaluates in minutes on 2 CPU cores.
DEFAULT_NOTES = 480
INSTRUMENTS_PER_FAMILY = 4
CACHE_VERSION = "synthetic-v1"

# family: (source, lowest MIDI pitch, highest MIDI pitch)
_FAMILY_SPECS = {
    "bass": ("electronic", 28, 55),
    "brass": ("acoustic", 45, 77),
    "flute": ("acoustic", 60, 96),
    "guitar": ("acoustic", 40, 84),
    "keyboard": ("acoustic", 36, 96),
    "mallet": ("acoustic", 60, 96),
    "organ": ("electronic", 36, 84),
    "reed": ("acoustic", 50, 84),
    "string": ("acoustic", 55, 91),
    "vocal": ("acoustic", 48, 79),
}
SYNTHETIC_FAMILIES = tuple(_FAMILY_SPECS)

_VOWELS = {  # formant frequencies (Hz) of five vowels
    "a": (800, 1150, 2900),
    "e": (400, 1600, 2700),
    "i": (270, 2140, 2950),
    "o": (450, 800, 2830),
    "u": (325, 700, 2530),
}
_TABLE_SIZE = 2048
_NYQUIST_MARGIN = 0.95 * SAMPLE_RATE / 2


def default_data_dir() -> Path:
    """The built-in synthetic dataset, generated on first use.

    It lives in `$KERAS_TIMBRE_CACHE/synthetic-v1` (default
    `~/.cache/keras_timbre/synthetic-v1`) and is written atomically
    (`keras_timbre.atomic.atomic_directory`), so an interrupted or concurrent
    first use never leaves a half-written dataset.

    Example:
    >>> records = read_notes(default_data_dir())  # doctest: +SKIP
    """
    root = Path(os.environ.get("KERAS_TIMBRE_CACHE", Path.home() / ".cache" / "keras_timbre")).expanduser()
    target = root / CACHE_VERSION
    if (target / "examples.json").is_file():
        return target
    try:
        with atomic.atomic_directory(target) as tmp:
            make_synthetic_dataset(tmp, notes=DEFAULT_NOTES, seed=0)
    except FileExistsError:
        if not (target / "examples.json").is_file():  # not a concurrent writer that won
            raise
    return target


def make_synthetic_dataset(
    out_dir: str | os.PathLike,
    notes: int = DEFAULT_NOTES,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Writes a deterministic synthetic NSynth-format dataset, atomically.

    Args:
        out_dir: New or empty folder to write `examples.json` and
            `audio/*.wav` into.
        notes: Number of notes, spread over 10 families, up to 4 instruments
            each, and their pitch ranges and velocities.
        seed: The same seed writes the same files.
        progress: Show a progress bar.
        overwrite: Replace an earlier dataset in `out_dir` (one holding only
            `examples.json` and `audio/*.wav`); anything else there is refused.

    Returns:
        `out_dir` as a Path.

    Raises:
        OutputPathError: `out_dir` is a file, holds other files, or holds a
            dataset (without `overwrite`); checked before any note is made.

    Example:
    >>> path = make_synthetic_dataset("/tmp/synth", notes=40, seed=0)  # doctest: +SKIP
    >>> len(read_notes(path))  # doctest: +SKIP
    40
    """
    if notes < 1:
        raise ValueError(f"notes must be >= 1, got {notes}")
    out_dir = check_output_folder(out_dir, is_jsonwav_output, overwrite=overwrite)
    plan = _plan_notes(notes, seed)
    with atomic.atomic_directory(out_dir, replace=True) as tmp:
        _write_notes(tmp, plan, seed, progress)
    return out_dir


def is_jsonwav_output(path: Path) -> bool:
    """Whether `path`, in a dataset folder, is what the dataset writers write: `examples.json` or `audio/*.wav`."""
    if path.name == "examples.json":
        return path.is_file() and not path.is_symlink()
    if path.name != "audio" or path.is_symlink() or not path.is_dir():
        return False
    return all(f.suffix == ".wav" and f.is_file() and not f.is_symlink() for f in path.iterdir())


def _write_notes(out_dir: Path, plan: list, seed: int, progress: bool) -> None:
    from tqdm.auto import tqdm

    audio_dir = out_dir / "audio"
    audio_dir.mkdir()
    examples = {}
    for index, (family, instrument, pitch, velocity) in enumerate(
        tqdm(plan, desc="synthesising notes", unit="note", disable=None if progress else True)
    ):
        source = _FAMILY_SPECS[family][0]
        instrument_str = f"{family}_{source}_{instrument:03d}"
        note_str = f"{instrument_str}-{pitch:03d}-{velocity:03d}"
        waveform = synthesize_note(family, instrument, pitch, velocity, seed=seed)
        write_wav(audio_dir / f"{note_str}.wav", waveform)
        record = NoteRecord(
            str(audio_dir / f"{note_str}.wav"), note_str, family, source, instrument_str, pitch, velocity
        )
        examples[note_str] = example_entry(record, index, SAMPLE_RATE)
    atomic.write_json(out_dir / "examples.json", examples)


def _plan_notes(notes: int, seed: int) -> list[tuple[str, int, int, int]]:
    """(family, instrument, pitch, velocity) per note, unique names, deterministic."""
    families = SYNTHETIC_FAMILIES
    plan = []
    for f, family in enumerate(families):
        family_notes = notes // len(families) + (f < notes % len(families))
        if family_notes == 0:
            continue
        instruments = max(1, min(INSTRUMENTS_PER_FAMILY, family_notes // 3))
        _, low, high = _FAMILY_SPECS[family]
        for instrument in range(instruments):
            count = family_notes // instruments + (instrument < family_notes % instruments)
            rng = np.random.default_rng([seed, f, instrument, 1])
            # Each instrument covers the family's range on its own grid.
            pitches = np.linspace(low, high, count) + rng.uniform(-1.5, 1.5)
            pitches = np.clip(np.round(pitches), low, high).astype(int)
            used = set()
            for pitch in pitches:
                velocity = int(rng.choice(VELOCITIES))
                while (pitch, velocity) in used:  # same pitch twice: another velocity
                    velocity = VELOCITIES[(VELOCITIES.index(velocity) + 1) % len(VELOCITIES)]
                used.add((int(pitch), velocity))
                plan.append((family, instrument, int(pitch), velocity))
    return plan


def synthesize_note(family: str, instrument: int, pitch: int, velocity: int, seed: int = 0) -> np.ndarray:
    """One 4 s note (held 3 s) of a synthetic instrument, float32 in [-1, 1].

    Args:
        family: One of `SYNTHETIC_FAMILIES`.
        instrument: Instrument number; fixes the instrument's own parameters.
        pitch: MIDI pitch.
        velocity: MIDI velocity, 1-127: louder and brighter when higher.
        seed: Dataset seed.

    Example:
    >>> synthesize_note("flute", 0, 69, 100).shape
    (64000,)
    """
    if family not in _FAMILY_SPECS:
        raise ValueError(f"Unknown family {family!r}; synthetic families: {list(SYNTHETIC_FAMILIES)}")
    f = SYNTHETIC_FAMILIES.index(family)
    # The instrument's character: fixed per (seed, family, instrument).
    character = np.random.default_rng([seed, f, instrument, 0])
    # This note's randomness (noise, small detunings).
    rng = np.random.default_rng([seed, f, instrument, pitch, velocity])
    loud = velocity / 127.0
    f0 = 440.0 * 2.0 ** ((pitch - 69) / 12.0)
    t = np.arange(int(SAMPLE_RATE * DURATION)) / SAMPLE_RATE
    waveform = _RECIPES[family](t, f0, loud, character, rng)
    peak = np.max(np.abs(waveform))
    waveform = waveform / max(peak, 1e-9) * (0.15 + 0.75 * loud**1.5)
    return waveform.astype(np.float32)


# ---------------------------------------------------------------- building blocks


def _envelope(t, attack, decay, sustain, release, curve=4.0):
    """ADSR: power-curve attack, exponential decay to `sustain`, release after NOTE_OFF."""
    rise = np.clip(t / max(attack, 1e-4), 0.0, 1.0) ** (1.0 / curve * 2.0)
    held = sustain + (1.0 - sustain) * np.exp(-np.maximum(t - attack, 0.0) / max(decay, 1e-4))
    level = rise * held
    at_off = np.interp(NOTE_OFF, t, level)
    after = at_off * np.exp(-(t - NOTE_OFF) / release)
    return np.where(t < NOTE_OFF, level, after)


def _struck(t, decay, release):
    """A struck or plucked note: exponential decay, damped faster after NOTE_OFF."""
    held = np.exp(-t / decay)
    damped = np.exp(-NOTE_OFF / decay) * np.exp(-(t - NOTE_OFF) / release)
    return np.where(t < NOTE_OFF, held, damped)


def _phase(t, f0, vibrato_rate=0.0, vibrato_depth=0.0, vibrato_delay=0.0, scoop=0.0, scoop_time=0.05):
    """Cycles elapsed (fractional) for a pitch with vibrato and an initial scoop."""
    ramp = np.clip((t - vibrato_delay) / 0.3, 0.0, 1.0)
    frequency = f0 * (1.0 + vibrato_depth * ramp * np.sin(2 * np.pi * vibrato_rate * t))
    frequency *= 1.0 - scoop * np.exp(-t / scoop_time)
    return np.cumsum(frequency) / SAMPLE_RATE


def _wavetable(amplitudes, phases):
    """One cycle with harmonic k+1 at `amplitudes[k]`, shape (_TABLE_SIZE + 1,), wrapped."""
    spectrum = np.zeros(_TABLE_SIZE // 2 + 1, np.complex128)
    k = np.arange(1, len(amplitudes) + 1)
    spectrum[k] = np.asarray(amplitudes) * np.exp(1j * phases[: len(amplitudes)])
    table = np.fft.irfft(spectrum, n=_TABLE_SIZE) * _TABLE_SIZE / 2
    return np.append(table, table[0])


def _read_table(table, cycles):
    position = (cycles % 1.0) * _TABLE_SIZE
    index = position.astype(np.int64)
    frac = position - index
    return table[index] * (1.0 - frac) + table[index + 1] * frac


def _harmonic(t, f0, amplitudes_dark, amplitudes_bright, brightness, cycles, rng):
    """Harmonic tone morphing between a dark and a bright spectrum with `brightness(t)`."""
    count = min(len(amplitudes_dark), int(_NYQUIST_MARGIN / (f0 * 1.03)), _TABLE_SIZE // 2 - 1)
    count = max(count, 1)
    phases = rng.uniform(0, 2 * np.pi, count)
    dark = _read_table(_wavetable(amplitudes_dark[:count], phases), cycles)
    bright = _read_table(_wavetable(amplitudes_bright[:count], phases), cycles)
    return dark + (bright - dark) * brightness


def _partials(t, frequencies, amplitudes, decays, rng, slow_decays=None, slow_weight=0.0):
    """Sum of exponentially decaying sines (inharmonic allowed); those above Nyquist dropped.

    With `slow_decays`, each partial decays in two stages (a piano's prompt and
    after-sound): `(1 - slow_weight) * exp(-t / decay) + slow_weight * exp(-t / slow_decay)`.
    """
    frequencies, amplitudes, decays = (np.asarray(v, np.float64) for v in (frequencies, amplitudes, decays))
    offsets = rng.uniform(0.0, 2 * np.pi, frequencies.shape[0])
    keep = frequencies < _NYQUIST_MARGIN
    stages = (
        [(decays, 1.0 - slow_weight)]
        if slow_decays is None
        else [(decays, 1.0 - slow_weight), (np.asarray(slow_decays, np.float64), slow_weight)]
    )
    total = np.zeros(t.shape[0], np.float32)
    for stage_decays, weight in stages:
        total += _damped_sines(t.shape[0], frequencies[keep], stage_decays[keep], offsets[keep]) @ (
            weight * amplitudes[keep]
        ).astype(np.float32)
    return total


def _damped_sines(length, frequencies, decays, offsets, block=256):
    """(length, partials) float32 of exp(-t / decay) * sin(2 pi f t + offset).

    Each sample is a block start's rotation times a within-block rotation,
    both exact complex exponentials (no accumulated error): one complex64
    multiply per sample instead of a sin and an exp.
    """
    exponent = -1.0 / (decays * SAMPLE_RATE) + 2j * np.pi * frequencies / SAMPLE_RATE  # per sample
    blocks = -(-length // block)
    within = np.exp(np.arange(block)[:, None] * exponent).astype(np.complex64)  # (block, K)
    starts = np.exp(np.arange(blocks)[:, None] * block * exponent + 1j * offsets).astype(np.complex64)
    rotations = (starts[:, None, :] * within[None, :, :]).reshape(blocks * block, -1)[:length]
    return np.ascontiguousarray(rotations.imag)


def _noise(t, rng, center, width):
    """Gaussian noise band-passed around `center` Hz (a Gaussian of `width` Hz), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(t.shape[0]))
    frequency = np.fft.rfftfreq(t.shape[0], 1.0 / SAMPLE_RATE)
    spectrum *= np.exp(-0.5 * ((frequency - center) / width) ** 2)
    band = np.fft.irfft(spectrum, n=t.shape[0])
    return band / (np.std(band) + 1e-12)


def _formants(frequencies, centers, bandwidth=120.0):
    """Gain of a sum of resonances at `centers`, evaluated at `frequencies`."""
    gain = np.full_like(frequencies, 0.02)
    for i, center in enumerate(centers):
        gain += (0.7**i) / (1.0 + ((frequencies - center) / (bandwidth * (1 + i))) ** 2)
    return gain


def _tilt(k, loud, amount=0.8):
    """Softer notes are darker: high harmonics drop with lower velocity."""
    return k ** (-(1.0 - loud) * amount)


# ---------------------------------------------------------------- family recipes


def _bass(t, f0, loud, character, rng):
    k = np.arange(1, 61)
    cutoff = character.uniform(3, 6)
    bright = (1.0 / k) * np.exp(-k / (cutoff * (1 + 2 * loud))) * _tilt(k, loud)
    dark = (1.0 / k) * np.exp(-k / cutoff)
    sweep = np.exp(-t / character.uniform(0.15, 0.4))
    env = _envelope(t, 0.005, character.uniform(0.3, 0.8), character.uniform(0.4, 0.7), 0.12)
    return env * _harmonic(t, f0, dark, bright, sweep, _phase(t, f0), rng)


def _brass(t, f0, loud, character, rng):
    k = np.arange(1, 61)
    formant = _formants(k * f0, [character.uniform(1000, 1500)], bandwidth=500.0)
    bright = k**-0.6 * formant * _tilt(k, loud, 0.5)
    dark = k**-1.8 * formant
    env = _envelope(t, character.uniform(0.06, 0.1), 0.2, 0.85, 0.1)
    cycles = _phase(t, f0, 5.0, 0.003, vibrato_delay=1.0, scoop=0.02)
    return env * _harmonic(t, f0, dark, bright, env**2, cycles, rng)


def _flute(t, f0, loud, character, rng):
    even = character.uniform(0.15, 0.35)
    amplitudes = np.array([1.0, even, 0.08, 0.03, 0.01])
    env = _envelope(t, character.uniform(0.1, 0.16), 0.3, 0.9, 0.15)
    cycles = _phase(t, f0, character.uniform(4.5, 5.5), 0.006, vibrato_delay=0.4)
    tone = _harmonic(t, f0, amplitudes, amplitudes, 0.0, cycles, rng)
    breath = 0.1 * _noise(t, rng, min(2.5 * f0, 6000), 1200) + 0.05 * _noise(t, rng, 4500, 1500)
    return env * (tone / (np.std(tone) + 1e-9) + character.uniform(0.3, 0.5) * breath)


def _guitar(t, f0, loud, character, rng):
    k = np.arange(1, 21)
    position = character.uniform(0.12, 0.25)
    inharmonicity = character.uniform(0.5e-4, 1.5e-4)
    frequencies = k * f0 * np.sqrt(1 + inharmonicity * k**2)
    amplitudes = np.abs(np.sin(np.pi * k * position)) / k * _tilt(k, loud)
    decays = character.uniform(0.8, 1.5) / (1 + 0.25 * k)
    tone = _partials(t, frequencies, amplitudes, decays, rng)
    pluck = _noise(t, rng, 3000, 2000) * np.exp(-t / 0.004) * 0.3 * loud
    return _struck(t, 1e9, 0.06) * (tone / (np.std(tone[:8000]) + 1e-9) + pluck)


def _keyboard(t, f0, loud, character, rng):
    k = np.arange(1, 17)
    inharmonicity = character.uniform(2e-4, 5e-4)
    frequencies = k * f0 * np.sqrt(1 + inharmonicity * k**2)
    amplitudes = k**-1.2 * _tilt(k, loud, 1.2)
    fast = character.uniform(0.15, 0.3) / (1 + 0.1 * k)
    slow = character.uniform(1.5, 3.0) / (1 + 0.15 * k)
    detune = 1 + character.uniform(0.0003, 0.001)  # a second string, slightly sharp: beating
    tone = _partials(t, frequencies, amplitudes, fast, rng, slow, 0.4) + 0.4 * _partials(
        t, frequencies * detune, amplitudes, slow, rng
    )
    thump = _noise(t, rng, 150, 150) * np.exp(-t / 0.015) * 0.5 * loud
    return _struck(t, 1e9, 0.1) * (tone / (np.std(tone[:8000]) + 1e-9) + thump)


def _mallet(t, f0, loud, character, rng):
    ratios = np.array([1.0, character.uniform(3.85, 4.05), character.uniform(9.2, 10.0), 17.0])
    amplitudes = np.array([1.0, 0.5, 0.25, 0.1]) * _tilt(np.arange(1, 5), loud, 1.5)
    decays = character.uniform(0.4, 0.9) / ratios**0.7
    tone = _partials(t, f0 * ratios, amplitudes, decays, rng)
    click = _noise(t, rng, 4000, 2500) * np.exp(-t / 0.002) * loud
    return _struck(t, 1e9, 0.05) * (tone / (np.std(tone[:4000]) + 1e-9) + click)


def _organ(t, f0, loud, character, rng):
    drawbars = np.zeros(16)
    for harmonic in (1, 2, 3, 4, 6, 8):
        drawbars[harmonic - 1] = character.uniform(0.0, 1.0)
    drawbars[0] = 1.0
    env = _envelope(t, 0.01, 0.05, 1.0, 0.04)
    tremolo = 1 + character.uniform(0.0, 0.15) * np.sin(2 * np.pi * character.uniform(5.5, 7.0) * t)
    return env * tremolo * _harmonic(t, f0, drawbars, drawbars, 0.0, _phase(t, f0), rng)


def _reed(t, f0, loud, character, rng):
    k = np.arange(1, 41)
    even = character.uniform(0.02, 0.1)
    amplitudes = np.where(k % 2 == 1, 1.0, even) / k ** character.uniform(0.7, 1.1)
    bright = amplitudes * _tilt(k, loud, 0.6)
    env = _envelope(t, 0.04, 0.2, 0.9, 0.08)
    cycles = _phase(t, f0, 5.0, 0.002, vibrato_delay=0.8)
    tone = _harmonic(t, f0, amplitudes * k**-0.5, bright, env, cycles, rng)
    return env * (tone / (np.std(tone) + 1e-9) + 0.04 * _noise(t, rng, 2500, 1500))


def _string(t, f0, loud, character, rng):
    k = np.arange(1, 61)
    body = _formants(k * f0, [character.uniform(280, 320), character.uniform(900, 1100), 2800], 150.0)
    amplitudes = body / k * _tilt(k, loud, 0.6)
    env = _envelope(t, character.uniform(0.15, 0.25), 0.3, 0.9, 0.2, curve=2.0)
    cycles = _phase(t, f0, character.uniform(5.5, 6.5), 0.008, vibrato_delay=0.3)
    tone = _harmonic(t, f0, amplitudes, amplitudes, 0.0, cycles, rng)
    bow = _noise(t, rng, 5000, 2500) * character.uniform(0.05, 0.1)
    return env * (tone / (np.std(tone) + 1e-9) + bow)


def _vocal(t, f0, loud, character, rng):
    k = np.arange(1, 81)
    vowel = list(_VOWELS.values())[int(character.integers(len(_VOWELS)))]
    amplitudes = k**-1.2 * _formants(k * f0, vowel, 90.0) * _tilt(k, loud, 0.5)
    env = _envelope(t, 0.1, 0.3, 0.85, 0.2, curve=2.0)
    cycles = _phase(t, f0, character.uniform(5.0, 6.0), 0.012, vibrato_delay=0.5)
    tone = _harmonic(t, f0, amplitudes, amplitudes, 0.0, cycles, rng)
    breath = _noise(t, rng, vowel[1], 400) * 0.05
    return env * (tone / (np.std(tone) + 1e-9) + breath)


_RECIPES = {
    "bass": _bass,
    "brass": _brass,
    "flute": _flute,
    "guitar": _guitar,
    "keyboard": _keyboard,
    "mallet": _mallet,
    "organ": _organ,
    "reed": _reed,
    "string": _string,
    "vocal": _vocal,
}


def write_wav(path: str | os.PathLike, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Writes a mono float waveform as 16-bit PCM WAV, atomically."""
    pcm = np.clip(np.round(waveform * 32767.0), -32768, 32767).astype("<i2")
    with atomic.atomic_path(path) as tmp:
        with wave.open(str(tmp), "wb") as file:
            file.setnchannels(1)
            file.setsampwidth(2)
            file.setframerate(sample_rate)
            file.writeframes(pcm.tobytes())
