"""Polyphonic music modelling on J. S. Bach's four-part chorales, as binary piano rolls.

The data: the chorales that music21 ships in its corpus (`music21/corpus/bach/*.mxl|*.xml`,
read in sorted file-name order). A file counts as a chorale when it has exactly four parts
(S, A, T, B): 365 files in music21 10.5, of which 364 distinct chorales (the Weimar version of
BWV 18.5 is dropped: the first four-part file of each BWV number is kept). This drops the 44
settings with instrumental parts and the one non-chorale (BWV 846, a prelude). Repeats are not
expanded, as in JSB Chorales.

A piano roll follows Boulanger-Lewandowski et al. 2012 (the JSB Chorales set of Chung et al. 2014):
frame k samples the score at time k / steps_per_quarter (in quarter notes; one frame per quarter
in JSB), and pitch j of the 88 piano keys (MIDI 21-108, `PITCH_LOW` + j) is 1 when a note of that
pitch sounds then, i.e. onset <= k / steps_per_quarter < onset + duration. Notes that cover no
sample point (passing eighths between quarter frames) vanish; tied notes merge. The chorales use
MIDI 36-81. `transpose="c"` shifts each chorale by the semitones (-6..+5) that take its first key
signature to none (C major / A minor); JSB is not transposed ("none").

The split is by chorale, fixed (independent of `train.seed`): the chosen chorales (the first
`max_chorales` in file order, 0 for all) in a permutation drawn from `SPLIT_SEED`, then 60% train
/ 20% valid / 20% test, at least one each: 218 / 73 / 73 for all 364 (JSB: 229 / 76 / 77).

Parsing every file takes about a minute, so the rolls are cached in an `.npz` under
`$XDG_CACHE_HOME/gatedrnn` (default `~/.cache/gatedrnn`), keyed by the music21 version and the
processing parameters and written atomically. Shapes: b batch, t time (frames), p = 88 pitches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.metadata
import math
import os
import tempfile
import warnings
from fractions import Fraction
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gatedrnn import losses
from gatedrnn.losses import bernoulli_nll_metrics
from gatedrnn.nn.lm import generate_tokens  # the one sampling loop
from gatedrnn.tasks.base import Task
from gatedrnn.tasks.data import epoch_indices, eval_indices, package_dir, stream_rng
from gatedrnn.tasks.figures import new_figure, save_figure
from gatedrnn.validation import ConfigError, check_choice, check_positive

PITCH_LOW, NUM_PITCHES = 21, 88  # the piano's keys A0..C8 (MIDI 21-108), as in JSB Chorales
TRANSPOSES = ("none", "c")
SPLITS = ("train", "valid", "test")
EVAL_SPLITS = ("valid", "test")
SPLIT_SEED = 2012
CACHE_FORMAT = 1  # bump when the processing below changes what a cached file holds
_CROP_STREAM = 2  # training-window offsets: a stream of their own (0 and 1 are train and eval)
WHAT = "the Bach chorales"


# ----------------------------------------------------------------------------- piano rolls


@contextlib.contextmanager
def _quiet_music21():
    """music21's own warnings (pytest turns warnings into errors) are not ours to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"music21(\.|$)")
        yield


def piano_roll(score, steps_per_quarter: int, shift: int = 0) -> np.ndarray:
    """A music21 stream -> uint8 [t, 88]: roll[k, j] = 1 iff pitch PITCH_LOW + j (after `shift`
    semitones) sounds at time k / steps_per_quarter, t = ceil(last note end * steps_per_quarter).

    Every note and chord of every part counts; a note is the half-open interval
    [onset, onset + duration), in exact fractions of a quarter note.
    """
    spans = []
    for n in score.flatten().notes:
        onset = Fraction(n.offset)
        end = onset + Fraction(n.duration.quarterLength)
        first, stop = math.ceil(onset * steps_per_quarter), math.ceil(end * steps_per_quarter)
        spans += [(p.midi + shift - PITCH_LOW, first, stop) for p in n.pitches]
    length = max((stop for _, _, stop in spans), default=0)
    roll = np.zeros((length, NUM_PITCHES), np.uint8)
    for j, first, stop in spans:
        if not 0 <= j < NUM_PITCHES:
            raise ValueError(f"MIDI pitch {j + PITCH_LOW} lies outside the piano's 21-108")
        roll[first:stop, j] = 1
    return roll


def key_shift(score) -> int:
    """Semitones in -6..+5 that take the score's first key signature to none (0 without one).

    A signature of s sharps (negative: flats) is the major key with tonic pitch class 7s mod 12.
    """
    from music21 import key

    signatures = score.flatten().getElementsByClass(key.KeySignature)
    if not signatures:
        return 0
    tonic = (7 * signatures[0].sharps) % 12
    return (-tonic + 6) % 12 - 6


def roll_to_stream(roll: np.ndarray, steps_per_quarter: int, tempo: int = 80):
    """uint8/bool [t, 88] -> a music21 Stream with one note per run of consecutive active frames."""
    from music21 import note, stream
    from music21 import tempo as m21tempo

    s = stream.Stream()
    s.insert(0, m21tempo.MetronomeMark(number=tempo))
    active = np.pad(np.asarray(roll, bool), ((1, 1), (0, 0)))
    for j in range(NUM_PITCHES):
        edges = np.flatnonzero(np.diff(active[:, j].astype(np.int8)))  # run starts and stops, alternating
        for first, stop in zip(edges[::2], edges[1::2]):
            n = note.Note(midi=PITCH_LOW + j, quarterLength=Fraction(int(stop - first), steps_per_quarter))
            s.insert(Fraction(int(first), steps_per_quarter), n)
    return s


def write_midi(roll: np.ndarray, steps_per_quarter: int, path: str) -> str:
    with _quiet_music21():
        roll_to_stream(roll, steps_per_quarter).write("midi", fp=path)
    return path


def midi_to_roll(path: str, steps_per_quarter: int) -> np.ndarray:
    """A MIDI file -> uint8 [t, 88], from its note-on/off events (music21's low-level reader: its
    score parser mis-times chords of dozens of notes, as an untrained model samples)."""
    from music21 import midi

    mf = midi.MidiFile()
    mf.open(path)
    mf.read()
    mf.close()
    spans, on_voice = [], (midi.ChannelVoiceMessages.NOTE_ON, midi.ChannelVoiceMessages.NOTE_OFF)
    for track in mf.tracks:
        tick, sounding = 0, {}
        for e in track.events:
            if isinstance(e, midi.DeltaTime):
                tick += e.time
            elif e.type == midi.ChannelVoiceMessages.NOTE_ON and e.velocity > 0:
                sounding[(e.channel, e.pitch)] = tick
            elif e.type in on_voice and (e.channel, e.pitch) in sounding:
                start = sounding.pop((e.channel, e.pitch))
                spans.append((e.pitch - PITCH_LOW, *(math.ceil(Fraction(x * steps_per_quarter, mf.ticksPerQuarterNote))
                                                     for x in (start, tick))))
    roll = np.zeros((max((stop for *_, stop in spans), default=0), NUM_PITCHES), np.uint8)
    for j, first, stop in spans:
        roll[first:stop, j] = 1
    return roll


# ----------------------------------------------------------------------------- the corpus


def _group(name: str) -> str:
    """'bwv18.5-lz.mxl' -> 'bwv18.5': the versions of one chorale share it."""
    return name.rsplit(".", 1)[0].split("-")[0]


def corpus_paths() -> list[str]:
    """The MusicXML files of music21's Bach corpus, sorted by name (MissingPackageError without music21)."""
    root = os.path.join(package_dir("music21", WHAT), "corpus", "bach")
    return [os.path.join(root, f) for f in sorted(os.listdir(root)) if f.endswith((".mxl", ".xml"))]


def parse_score(path: str):
    from music21 import converter

    with _quiet_music21():
        return converter.parse(path, forceSource=True)  # forceSource: no pickle of music21's own


def process_corpus(steps_per_quarter: int, transpose: str, max_chorales: int) -> tuple[list[str], list[np.ndarray]]:
    """Parses the corpus: (names, rolls [t_i, 88]) of the first `max_chorales` four-part chorales (0: all)."""
    names, rolls, seen = [], [], set()
    for path in corpus_paths():
        name = os.path.basename(path)
        if _group(name) in seen:
            continue
        score = parse_score(path)
        if len(score.parts) != 4:
            continue
        seen.add(_group(name))
        names.append(name)
        rolls.append(piano_roll(score, steps_per_quarter, key_shift(score) if transpose == "c" else 0))
        if len(names) == max_chorales:
            break
    return names, rolls


def cache_path(steps_per_quarter: int, transpose: str, max_chorales: int) -> str:
    root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gatedrnn")
    version = importlib.metadata.version("music21")
    return os.path.join(root, f"chorales-v{CACHE_FORMAT}-music21_{version}-spq{steps_per_quarter}-"
                              f"transpose_{transpose}-n{max_chorales or 'all'}.npz")


def _read_cache(path: str, key: np.ndarray) -> tuple[list[str], list[np.ndarray]] | None:
    try:
        with np.load(path) as z:
            if not np.array_equal(z["key"], key):
                return None
            frames, lengths, names = z["frames"], z["lengths"], z["names"]
    except (OSError, ValueError, KeyError):  # absent, half-written by a killed run, or an old layout
        return None
    return [str(n) for n in names], np.split(frames, np.cumsum(lengths)[:-1])


def load_chorales(steps_per_quarter: int, transpose: str, max_chorales: int) -> tuple[list[str], list[np.ndarray]]:
    """(names, rolls uint8 [t_i, 88]) from the cache, or parsed with music21 and cached."""
    package_dir("music21", WHAT)  # MissingPackageError, cache or not
    path = cache_path(steps_per_quarter, transpose, max_chorales)
    key = np.asarray([os.path.basename(path)])  # the parameters, checked again on reading
    cached = _read_cache(path, key)
    if cached is not None:
        return cached
    names, rolls = process_corpus(steps_per_quarter, transpose, max_chorales)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=os.path.dirname(path), suffix=".tmp", delete=False) as f:
        try:
            np.savez_compressed(f, key=key, names=np.asarray(names), lengths=np.asarray([len(r) for r in rolls]),
                                frames=np.concatenate(rolls))
        except BaseException:
            os.unlink(f.name)
            raise
    os.chmod(f.name, 0o644)  # tempfile makes it private
    os.replace(f.name, path)  # atomic: readers see the old file or the whole new one
    return names, rolls


def split_indices(n: int) -> dict[str, np.ndarray]:
    """Sorted chorale indices per split: a fixed permutation of range(n), cut 60 / 20 / 20 (at least 1 each)."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_valid = n_test = max(1, round(0.2 * n))
    cuts = [n - n_valid - n_test, n - n_test]
    return {s: np.sort(part) for s, part in zip(SPLITS, np.split(perm, cuts))}


def _pad(rolls: list[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
    """[t_i, 88] rolls -> uint8 [n, width + 1, 88] with an all-zero start frame first, and lengths [n]."""
    out = np.zeros((len(rolls), width + 1, NUM_PITCHES), np.uint8)
    for i, r in enumerate(rolls):
        out[i, 1 : len(r) + 1] = r
    return out, np.asarray([len(r) for r in rolls], np.int32)


@functools.lru_cache(maxsize=4)
def chorale_splits(steps_per_quarter: int, transpose: str, max_chorales: int, seq_len: int) -> dict[str, Any]:
    """{split: {"names", "frames" uint8 [n, w + 1, 88], "lengths" [n]}} plus "pitch_freq" [88], the
    training frames' add-one smoothed pitch frequencies (the baseline)."""
    names, rolls = load_chorales(steps_per_quarter, transpose, max_chorales)
    splits = split_indices(len(rolls))
    out: dict[str, Any] = {}
    for split, idx in splits.items():
        part = [rolls[i] for i in idx]
        width = max(max(len(r) for r in part), seq_len if split == "train" else 0)
        frames, lengths = _pad(part, width)
        out[split] = {"names": [names[i] for i in idx], "frames": frames, "lengths": lengths}
    train = np.concatenate([rolls[i] for i in splits["train"]])
    out["pitch_freq"] = (train.sum(0) + 1.0) / (len(train) + 2.0)
    return out


# ----------------------------------------------------------------------------- the loss


def independent_bernoulli_nll(freq: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
    """[sum, count] of -sum_p (y log f_p + (1 - y) log(1 - f_p)) over valid steps: a model with fixed
    pitch probabilities f [p] and no context. targets [b, t, p]; mask [b, t]."""
    valid = mask > 0
    y = jnp.where(valid[..., None], targets.astype(jnp.float32), 0.0)  # padding never reaches arithmetic
    nll = -(jnp.einsum("btp,p->bt", y, jnp.log(freq)) + jnp.einsum("btp,p->bt", 1.0 - y, jnp.log1p(-freq)))
    return losses.pair(jnp.sum(jnp.where(valid, nll, 0.0)), jnp.sum(valid))


# ----------------------------------------------------------------------------- the task


@dataclasses.dataclass(frozen=True)
class ChoralesTask(Task):
    """Next-frame prediction: inputs frames 0..t-1 (after an all-zero start frame), targets frames
    0..t, each [b, t, 88] float32, with `mask` [b, t] and `seq_lengths` [b]; readout "all" and 88
    logits (sigmoid per pitch). Every frame of a chorale is a target, the first one included.

    Train batches: chorales in epochs (`epoch_indices`), each cropped to a window of `seq_len`
    frames at a random offset (shorter chorales are padded and masked). Eval batch i: whole
    chorales of `eval_split` in order, padded to its longest; eval.num_batches * eval.batch_size
    >= its size scores every frame of it exactly once. Reports `nll_per_step` (nats),
    `baseline_nll_per_step` (independent Bernoulli pitches with the training frequencies) and
    `frame_accuracy`.
    """

    steps_per_quarter: int = 1
    transpose: str = "none"
    max_chorales: int = 0
    seq_len: int = 128
    eval_split: str = "test"

    readout = "all"
    vocab_size = None
    input_size = NUM_PITCHES
    output_size = NUM_PITCHES
    causal = True  # target frame t is input frame t + 1: a backward direction would read it

    def __post_init__(self):
        check_positive("data.steps_per_quarter", self.steps_per_quarter)
        check_positive("data.seq_len", self.seq_len)
        check_choice("data.transpose", self.transpose, TRANSPOSES)
        check_choice("data.eval_split", self.eval_split, EVAL_SPLITS)
        m = self.max_chorales
        if isinstance(m, bool) or not isinstance(m, int) or not (m == 0 or m >= 3):
            raise ConfigError(f"data.max_chorales must be 0 (all) or an integer >= 3 (one chorale per split), got {m!r}")

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "ChoralesTask":
        d = config.data
        return cls(steps_per_quarter=d.steps_per_quarter, transpose=d.transpose, max_chorales=d.max_chorales,
                   seq_len=d.seq_len, eval_split=d.eval_split)

    @property
    def data(self) -> dict[str, Any]:
        return chorale_splits(self.steps_per_quarter, self.transpose, self.max_chorales, self.seq_len)

    def train_batch(self, seed: int, step: int, batch_size: int) -> dict[str, np.ndarray]:
        train = self.data["train"]
        rows = epoch_indices(seed, step, batch_size, len(train["lengths"]))
        lengths = train["lengths"][rows]
        starts = stream_rng(seed, _CROP_STREAM, step).integers(0, np.maximum(lengths - self.seq_len, 0) + 1)
        window = train["frames"][rows[:, None], starts[:, None] + np.arange(self.seq_len + 1)]
        valid = starts[:, None] + np.arange(self.seq_len) < lengths[:, None]
        return {"inputs": window[:, :-1].astype(np.float32), "targets": window[:, 1:].astype(np.float32),
                "mask": valid.astype(np.float32), "seq_lengths": np.minimum(lengths - starts, self.seq_len).astype(np.int32)}

    def eval_batch(self, seed: int, index: int, batch_size: int) -> dict[str, np.ndarray]:
        del seed  # the held-out chorales do not depend on it
        part = self.data[self.eval_split]
        rows, row_mask = eval_indices(index, batch_size, len(part["lengths"]))
        frames, lengths = part["frames"][rows], part["lengths"][rows]
        width = frames.shape[1] - 1
        valid = (np.arange(width)[None, :] < lengths[:, None]) * row_mask[:, None]
        return {"inputs": frames[:, :-1].astype(np.float32), "targets": frames[:, 1:].astype(np.float32),
                "mask": valid.astype(np.float32), "seq_lengths": lengths}

    def metrics(self, outputs: jax.Array, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, losses.Sums]:
        loss, sums = bernoulli_nll_metrics(outputs, batch["targets"], batch["mask"])
        freq = jnp.asarray(self.data["pitch_freq"], jnp.float32)
        sums["baseline_nll_per_step"] = independent_bernoulli_nll(freq, batch["targets"], batch["mask"])
        return loss, sums

    def final_report(self, model, seed: int, workdir: str) -> tuple[str, dict[str, float]]:
        """Samples chorales from the trained model; writes them as MIDI files and one PNG into `workdir`."""
        return final_report(self, model, seed, workdir), {}


# ----------------------------------------------------------------------------- sampling


def sample_rolls(model, key: jax.Array, num_samples: int, num_steps: int) -> np.ndarray:
    """uint8 [n, t, 88] drawn from a trained unidirectional SequenceModel: frame t ~ Bernoulli(sigmoid(
    logits given frames < t)) per pitch, fed back; the first input is the all-zero start frame.
    The loop is `gatedrnn.nn.lm.generate_tokens` over the model's `prefill` and `step`."""
    def draw(key_t, logits):
        return jax.random.bernoulli(key_t, jax.nn.sigmoid(logits)).astype(jnp.float32)

    logits, carry = model.prefill(jnp.zeros((num_samples, 1, NUM_PITCHES), jnp.float32))
    frames = generate_tokens(model.step, key, logits, carry, num_steps, draw=draw)
    return np.asarray(frames).astype(np.uint8)


def plot_rolls(rolls: np.ndarray, low: int, high: int, path: str) -> str:
    """A PNG of rolls [n, t, 88] over MIDI pitches low..high (time across, pitch up)."""
    fig, axes = new_figure(len(rolls), 1, size=(10, 2.2 * len(rolls)))
    for i, (ax, roll) in enumerate(zip(axes[:, 0], rolls)):
        ax.imshow(roll[:, low - PITCH_LOW : high - PITCH_LOW + 1].T, origin="lower", aspect="auto", cmap="Greys",
                  extent=(0, len(roll), low - 0.5, high + 0.5), interpolation="nearest")
        ax.set_ylabel("MIDI pitch")
        ax.set_title(f"sample {i}", fontsize=9)
    axes[-1, 0].set_xlabel("frame")
    save_figure(fig, path)
    return path


def final_report(task: ChoralesTask, model, seed: int, workdir: str, num_samples: int = 3) -> str:
    data = task.data
    num_steps = int(np.median(data["train"]["lengths"]))
    rolls = sample_rolls(model, jax.random.key(seed), num_samples, num_steps)
    train_frames = data["train"]["frames"][:, 1:][np.arange(data["train"]["frames"].shape[1] - 1)[None, :]
                                                   < data["train"]["lengths"][:, None]]
    used = np.flatnonzero(train_frames.any(0))
    low, high = PITCH_LOW + int(used.min()) - 2, PITCH_LOW + int(used.max()) + 2
    np.savez_compressed(os.path.join(workdir, "samples.npz"), rolls=rolls, steps_per_quarter=task.steps_per_quarter)
    lines = [f"{num_samples} chorales of {num_steps} frames ({task.steps_per_quarter} per quarter) sampled from the "
             f"model; notes sounding per frame: training data {train_frames.sum(1).mean():.2f}"]
    for i, roll in enumerate(rolls):
        path = write_midi(roll, task.steps_per_quarter, os.path.join(workdir, f"sample_{i}.mid"))
        lines.append(f"  {path}: {roll.sum(1).mean():.2f} notes per frame")
    lines.append(f"  {plot_rolls(rolls, low, high, os.path.join(workdir, 'samples.png'))}: their piano rolls")
    lines.append(f"  {os.path.join(workdir, 'samples.npz')}: the rolls, uint8 [{num_samples}, {num_steps}, 88]")
    return "\n".join(lines)
