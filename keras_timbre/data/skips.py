"""SkipReport: what was left out of the data, and why, and what was changed in the rest.

One report follows the notes from the listing (`read_notes`: metadata
problems) through decoding (`feature_dataset`: unreadable files), so a
command prints every skipped note once, with its reason, and one count.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections import defaultdict

from keras_timbre.audio.io import print_message


@dataclasses.dataclass
class SkipReport:
    """Notes skipped, with reasons, and changes made to the others.

    Args:
        verbose: Print each skip, and the first file of each kind of change,
            to stderr when it happens.

    Example:
    >>> skips = SkipReport(verbose=False)
    >>> skips.skip("a.wav", "a.wav: empty file (0 bytes)")
    >>> skips.change("b.wav", ["resampled from 44100 Hz to 16000 Hz"])
    >>> print(skips.summary())
    1 file(s) skipped
      a.wav: empty file (0 bytes)
    1 file(s) resampled (e.g. b.wav: resampled from 44100 Hz to 16000 Hz)
    """

    verbose: bool = True
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    changes: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        # tf.data calls skip() and change() from its worker threads.
        self._lock = threading.Lock()

    def skip(self, path: str, reason: str) -> None:
        """Records that `path` was skipped; the first reason for a path is kept."""
        reason = reason.removeprefix(f"{path}: ")  # AudioError messages start with the path
        with self._lock:
            if path in self.skipped:
                return
            self.skipped[path] = reason
        if self.verbose:
            print_message(f"keras-timbre: skipped {path}: {reason}")

    def change(self, path: str, what: list[str]) -> None:
        """Records what loading did to a usable file (resampled, downmixed...)."""
        if not what:
            return
        with self._lock:
            new_kinds = set(_verbs(what)) - set(self.change_counts())
            self.changes[path] = list(what)
        if self.verbose:
            for message in what:
                if message.split()[0] in new_kinds:
                    print_message(f"keras-timbre: {path}: {message} (further such files are counted)")

    def __len__(self) -> int:
        return len(self.skipped)

    def change_counts(self) -> dict[str, int]:
        """Files per kind of change: `{"resampled": 3, "padded": 1, ...}`."""
        counts = defaultdict(int)
        for what in list(self.changes.values()):
            for verb in _verbs(what):
                counts[verb] += 1
        return dict(sorted(counts.items()))

    def reason_counts(self) -> dict[str, int]:
        """Skipped notes per kind of reason (the reason up to its first colon or parenthesis).

        Example:
        >>> skips = SkipReport(verbose=False)
        >>> skips.skip("a.wav", "truncated WAV: header promises 10 bytes of audio, the file holds 2")
        >>> skips.reason_counts()
        {'truncated WAV': 1}
        """
        kinds = Counter(reason.split(":")[0].split(" (")[0].strip() for reason in self.skipped.values())
        return dict(sorted(kinds.items()))

    def summary(self) -> str:
        """Every skipped file with its reason, then counts of changes."""
        lines = [f"{len(self.skipped)} file(s) skipped"]
        lines += [f"  {path}: {reason}" for path, reason in sorted(self.skipped.items())]
        return "\n".join(lines + self._change_lines())

    def _change_lines(self) -> list[str]:
        lines = []
        for verb, count in self.change_counts().items():
            example = next(p for p, what in sorted(self.changes.items()) if verb in _verbs(what))
            detail = next(m for m in self.changes[example] if m.startswith(verb))
            lines.append(f"{count} file(s) {verb} (e.g. {example}: {detail})")
        return lines


def _verbs(what: list[str]) -> set[str]:
    return {message.split()[0] for message in what}
