"""The synthetic demo corpus: text + speech + Empatica E4 biosignals, generated offline.

``mer demo`` needs a corpus that downloads nothing, generates in seconds, exercises
every code path of a real corpus (a generic manifest, WAV files, E4 CSVs in the KEMDy20
variant with segment tags, missing IBI) and, above all, is *informative by design*:
a fusion head must have something to fuse. A corpus in which one modality already
says everything would make every fusion method look equal; one in which no modality
says anything would make them all look broken.

Design: each utterance has one of the 7 KEMDy20 emotions, whose circumplex position
(arousal, valence) drives every modality, and an *intensity* (0..1) that every modality
shares in part: an intense utterance is more often worded, voiced and felt as its
emotion. Beyond that, each modality has its own strength and noise, and each sees a
different part of the emotion:

* **Text** names the specific category, but only when a cue is present. About half
  of the emotional sentences carry a cue of their own emotion (more when intense),
  some carry a cue of a confusable one (angry→disgust, fear→surprise, ...), the rest
  read neutral whatever the label; fillers, typos and dropped words add noise. Text
  alone therefore cannot tell a cue-less angry from a cue-less sad or neutral.
* **Audio** mainly carries *arousal* (pitch level, loudness, syllable rate, spectral
  tilt) plus some *valence* through prosody and voice quality (pitch range and a
  rising or falling terminal contour, jitter, tremor, breathiness). How strongly a
  clip expresses its emotion varies per clip, and speakers differ far more in base
  pitch (male/female), loudness and tempo than emotions do, so audio alone confuses
  neighbours on the circumplex (angry/fear/surprise, sad/disgust/neutral).
* **Biosignals** carry mainly *arousal*: the skin-conductance response (SCR)
  probability and amplitude, the skin-temperature drop (vasoconstriction) and the
  heart-rate rise, plus a small autonomic signature of three emotions from the
  psychophysiology literature (anger warms the skin and fear cools it; disgust slows
  the heart). A per-speaker tonic EDA level, SCR responsiveness, skin temperature and
  resting heart rate are nuisance the model must look past. Bio alone separates low
  from high arousal, not the categories within them.

So the modalities are complementary: text resolves the category when it has a cue,
audio supplies arousal and valence when it has none or when the cue is misleading, and
biosignals add an independent vote on arousal. With a linear probe (standardised
logistic regression, balanced classes, train on the 8 train speakers, macro-F1 on the
2 test speakers) on MiniLM mean-pooled text embeddings, openSMILE eGeMAPSv02
functionals and simple per-segment bio statistics, a 1,200-utterance corpus gives
about 45 (text), 45 (audio) and 25-30 (bio) macro-F1 alone, and 60-65 for the
concatenation of all three: fusion wins by 15 points or more, and no single
modality comes near perfect.

Physiology is laid out as in KEMDy20: one continuous E4 session per speaker in which
utterances are separated by pauses. The physiological episode of an utterance starts
a little before speech (anticipatory arousal), so its short tagged window shows it.
About a fifth of the utterances have no IBI rows (as in the real corpus), which the
manifest shows as an empty ``ibi`` cell.

Everything is deterministic by ``seed``: one random stream per (speaker, purpose),
a fixed session start time derived from the seed, fixed writer settings, so the same
seed gives byte-identical files.
"""

from __future__ import annotations

import csv
import io
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
from scipy.signal import lfilter
from tqdm import tqdm

SAMPLE_RATE = 16_000
E4_RATE = 4  # EDA and TEMP samples per second
BEAT_GRID = 64  # E4 reports beat times in 1/64 s
EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

#: class shares: neutral dominates, disgust is rarest (real KEMDy20 is 87 % neutral, too
#: extreme for a demo in which something must be learnable)
CLASS_SHARE = {"angry": 0.11, "disgust": 0.05, "fear": 0.07, "happy": 0.16, "neutral": 0.39, "sad": 0.12, "surprise": 0.10}
#: circumplex position on KEMDy20's 1-5 scales
AROUSAL = {"angry": 4.2, "disgust": 3.0, "fear": 4.0, "happy": 3.8, "neutral": 2.5, "sad": 1.8, "surprise": 4.3}
VALENCE = {"angry": 1.8, "disgust": 1.9, "fear": 2.0, "happy": 4.3, "neutral": 3.0, "sad": 1.9, "surprise": 3.4}

# --------------------------------------------------------------------------- text
#: neutral content: what the sentence is about
CONTEXTS = (
    "the meeting got moved to thursday", "I took the bus to work this morning", "my sister called me last night",
    "we had pasta for dinner", "the store closes at nine", "he sent me the report yesterday",
    "the train was on time today", "I have to renew my passport", "we watched a movie at home",
    "the new neighbours moved in", "my phone battery died", "the exam results came out",
    "our manager changed the schedule", "the package arrived this afternoon", "I ran into an old friend downtown",
    "the landlord raised the rent", "my dog got out of the yard", "they cancelled the concert",
    "I got a message from the bank", "the doctor called about my test", "my brother is coming to visit",
    "the restaurant on the corner closed", "we finished the project", "the flight was delayed",
    "I cleaned out the fridge", "someone left a note on my car", "the lights went out last night",
    "my cousin is getting married", "the teacher gave us a new assignment", "we moved the sofa upstairs",
)
#: emotion cues, one short clause each
CUES = {
    "angry": ("and I am so angry about it", "that is completely unacceptable", "I am sick and tired of this",
              "how dare they do that", "it makes me furious", "this is ridiculous", "I could scream",
              "they never listen and it drives me mad"),
    "disgust": ("it was absolutely disgusting", "that is so gross", "it made me want to throw up",
                "yuck, it smelled rotten", "the whole thing is revolting", "ugh, so nasty", "I find it repulsive",
                "it was filthy and sticky"),
    "fear": ("and I am really scared", "I am terrified of what happens next", "it makes me so nervous",
             "I am afraid something is wrong", "that is frightening", "I could not sleep, I was so worried",
             "my heart was pounding", "I was too afraid to go out"),
    "happy": ("and I am so happy", "that is wonderful news", "I love it", "it was such a great time",
              "I am so glad", "that made my day", "we had a fantastic time", "I could not stop smiling"),
    "sad": ("and I feel so sad", "I really miss them", "it breaks my heart", "I cried all night",
            "I feel so lonely now", "it is really depressing", "nothing feels right anymore", "I just feel empty"),
    "surprise": ("wow, I did not expect that at all", "no way, really", "I can't believe it", "what a surprise",
                 "that came out of nowhere", "seriously, I was shocked", "oh, that is unexpected",
                 "I never saw that coming"),
}
#: which emotion's cue a sentence borrows when its cue is misleading
CONFUSABLE = {"angry": ("disgust", "sad"), "disgust": ("angry",), "fear": ("surprise", "sad"),
              "happy": ("surprise",), "sad": ("fear", "angry"), "surprise": ("happy", "fear")}
ENDINGS = ("I think", "anyway", "so that is that", "I guess", "as usual", "nothing special", "we will see",
           "if I remember right", "or something like that", "")
FILLERS = ("um", "uh", "well", "like", "you know", "I mean", "so", "hmm")
P_OWN_CUE = 0.55  # an emotional sentence names its own emotion
P_CONFUSED_CUE = 0.12  # ... or a confusable one
P_NEUTRAL_CUE = 0.10  # a neutral sentence still carries some emotion word

# -------------------------------------------------------------------------- voice
#: prosodic profile per emotion; a clip moves from neutral towards it by its own strength
#: level_st: pitch level (semitones vs the speaker's base), range_st: syllable accent spread,
#: terminal_st: contour over the last third (rising > 0), energy_db, rate: syllable-rate factor,
#: jitter: period perturbation (fraction), tremor_st: 6 Hz vibrato depth, tilt: spectral slope
#: (higher = darker), breath: aspiration noise
VOICE_PARAMS = ("level_st", "range_st", "terminal_st", "energy_db", "rate", "jitter", "tremor_st", "tilt", "breath")
VOICE = {
    "angry": (3.0, 2.0, -3.0, 6.0, 1.20, 0.015, 0.0, 0.60, 0.03),
    "disgust": (-1.5, 1.5, -3.0, -1.0, 0.85, 0.020, 0.1, 1.10, 0.06),
    "fear": (4.0, 2.5, 1.0, 1.0, 1.25, 0.025, 0.6, 1.00, 0.12),
    "happy": (3.0, 3.5, 1.0, 3.0, 1.10, 0.008, 0.0, 0.80, 0.04),
    "neutral": (0.0, 1.5, -1.5, 0.0, 1.00, 0.010, 0.0, 1.00, 0.05),
    "sad": (-2.0, 0.8, -2.5, -5.0, 0.75, 0.015, 0.2, 1.40, 0.12),
    "surprise": (4.0, 4.0, 4.0, 4.0, 1.05, 0.010, 0.0, 0.80, 0.05),
}
#: autonomic specificity on top of arousal (Ekman et al. 1983; Kreibig 2010): anger warms the
#: skin while fear cools it (°C per second), disgust slows the heart while fear speeds it (bpm)
AUTONOMIC = {"angry": (0.025, 0.0), "fear": (-0.015, 3.0), "disgust": (0.0, -5.0)}
#: per-clip noise on each voice parameter (same order)
VOICE_NOISE = (1.5, 0.6, 1.5, 2.5, 0.10, 0.004, 0.1, 0.15, 0.02)


@dataclass
class Speaker:
    name: str
    sex: str
    split: str
    n: int
    # voice
    f0_hz: float
    gain_db: float
    rate: float  # syllables per second
    formants: tuple[float, float]
    # physiology
    eda_tonic: float  # µS
    eda_gain: float  # µS per unit arousal
    temp_base: float  # °C
    hr_base: float  # bpm
    p_no_ibi: float
    session_start: int = 0  # unix seconds, set once all sessions are laid out


@dataclass
class Utterance:
    id: str
    label: str
    text: str = ""
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    onset_ms: int = 0  # since session start; whole milliseconds so tags and windows agree exactly
    arousal_bio: float = 0.0  # the physiological arousal of its episode, 0..1
    warming: float = 0.0  # emotion-specific skin temperature change, °C per second
    hr_shift: float = 0.0  # emotion-specific heart rate change, bpm
    has_ibi: bool = True

    @property
    def duration_ms(self) -> int:
        return len(self.audio) * 1000 // SAMPLE_RATE  # clips are whole milliseconds long

    @property
    def onset(self) -> float:
        return self.onset_ms / 1000

    @property
    def duration(self) -> float:
        return self.duration_ms / 1000


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """One independent stream per purpose, so changing one modality never shifts another."""
    return np.random.default_rng([seed, *stream])


# ------------------------------------------------------------------------ planning
def _n_speakers(size: int) -> int:
    """12 speakers for the default 1,200 utterances; never fewer than 10, more for bigger corpora."""
    return min(24, max(10, 10 + size // 600))


def _largest_remainder(total: int, weights: np.ndarray, minimum: int = 0) -> np.ndarray:
    """Integer counts proportional to ``weights`` that sum to ``total``, each >= ``minimum``."""
    weights = np.asarray(weights, dtype=float) / np.sum(weights)
    counts = np.full(len(weights), minimum)
    rest = total - counts.sum()
    exact = weights * rest
    counts += np.floor(exact).astype(int)
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def _plan_speakers(size: int, seed: int) -> list[Speaker]:
    n = _n_speakers(size)
    n_held = max(2, round(n / 6))
    splits = ["train"] * (n - 2 * n_held) + ["val"] * n_held + ["test"] * n_held
    rng = _rng(seed, 0)
    order = rng.permutation(n)  # which speakers land in which split
    per_speaker = _largest_remainder(size, rng.uniform(0.8, 1.2, n))
    speakers = []
    for i in range(n):
        sex = "F" if i % 2 == 0 else "M"
        r = _rng(seed, 1, i)
        speakers.append(Speaker(
            name=f"spk{i + 1:02d}{sex}", sex=sex, split=splits[order[i]], n=int(per_speaker[i]),
            f0_hz=float(r.uniform(180, 240) if sex == "F" else r.uniform(95, 135)),
            gain_db=float(r.uniform(-5, 5)), rate=float(r.uniform(3.6, 5.0)),
            formants=(float(r.uniform(550, 700) * (1.15 if sex == "F" else 1.0)),
                      float(r.uniform(1200, 1600) * (1.15 if sex == "F" else 1.0))),
            eda_tonic=float(np.exp(r.uniform(np.log(0.4), np.log(6.0)))), eda_gain=float(r.uniform(0.2, 0.5)),
            temp_base=float(r.uniform(31.0, 34.3)), hr_base=float(r.uniform(62, 74)),
            p_no_ibi=float(r.uniform(0.08, 0.28)),
        ))
    for split in ("train", "val", "test"):
        total = sum(s.n for s in speakers if s.split == split)
        if total < len(EMOTIONS):
            raise ValueError(f"size={size} is too small: the {split} split would get {total} utterances, "
                             f"fewer than the {len(EMOTIONS)} classes it must hold (use size >= 100)")
    return speakers


def _assign_labels(speakers: list[Speaker], seed: int) -> dict[str, list[str]]:
    """Labels per speaker: exact class shares per split (every split holds every class), shuffled."""
    shares = np.array([CLASS_SHARE[e] for e in EMOTIONS])
    labels: dict[str, list[str]] = {}
    for k, split in enumerate(("train", "val", "test")):
        members = [s for s in speakers if s.split == split]
        counts = _largest_remainder(sum(s.n for s in members), shares, minimum=1)
        pool = np.repeat(np.arange(len(EMOTIONS)), counts)
        _rng(seed, 2, k).shuffle(pool)
        pos = 0
        for s in members:
            labels[s.name] = [EMOTIONS[j] for j in pool[pos: pos + s.n]]
            pos += s.n
    return labels


# ---------------------------------------------------------------------------- text
def _typo(word: str, rng: np.random.Generator) -> str:
    if len(word) < 4 or not word.isalpha():
        return word
    i = int(rng.integers(1, len(word) - 1))
    kind = int(rng.integers(3))
    if kind == 0:  # swap two letters
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:  # drop a letter
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]  # double a letter


def _sentence(label: str, intensity: float, rng: np.random.Generator) -> str:
    """A short sentence: neutral content, maybe an emotion cue, then fillers, typos and drops.

    An intense utterance names its emotion more often (the chance scales by 0.3-1.7).
    """
    r = rng.random()
    p_own = P_OWN_CUE * (0.3 + 1.4 * intensity)
    if label == "neutral":
        cue_of = str(rng.choice(list(CUES))) if r < P_NEUTRAL_CUE else ""
    elif r < p_own:
        cue_of = label
    elif r < p_own + P_CONFUSED_CUE:
        cue_of = str(rng.choice(CONFUSABLE[label]))
    else:
        cue_of = ""
    context = str(rng.choice(CONTEXTS))
    if cue_of:
        cue = str(rng.choice(CUES[cue_of]))
        clause = f"{cue.removeprefix('and ')}, {context}" if rng.random() < 0.3 else f"{context}, {cue}"
    else:
        ending = str(rng.choice(ENDINGS))
        clause = f"{context}, {ending}" if ending else context
    words = clause.split()
    keep = rng.random(len(words)) >= 0.03
    words = [_typo(w, rng) if rng.random() < 0.04 else w for w, k in zip(words, keep) if k] or words
    for _ in range(int(rng.choice([0, 0, 1, 1, 2]))):
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(FILLERS)) + ",")
    text = " ".join(words).replace(",,", ",").strip(" ,")
    end = "!" if cue_of in ("angry", "happy", "surprise") and rng.random() < 0.3 else "."
    if cue_of == "surprise" and rng.random() < 0.3:
        end = "?"
    return text[0].upper() + text[1:] + end


# --------------------------------------------------------------------------- audio
def _voice_params(label: str, intensity: float, rng: np.random.Generator) -> dict[str, float]:
    """Move from the neutral profile towards the emotion's, by a per-clip strength, plus noise.

    The strength is mostly the utterance's shared intensity, partly the voice's own.
    """
    neutral, target = np.array(VOICE["neutral"]), np.array(VOICE[label])
    strength = 0.05 + 1.05 * (0.75 * intensity + 0.25 * rng.random())
    values = neutral + strength * (target - neutral) + rng.normal(0.0, VOICE_NOISE)
    return dict(zip(VOICE_PARAMS, values.tolist()))


def _box_smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average via cumulative sums (O(n) whatever the width)."""
    c = np.concatenate([[0.0], np.cumsum(x)])
    half = width // 2
    lo = np.clip(np.arange(len(x)) - half, 0, len(x))
    hi = np.clip(np.arange(len(x)) + half + 1, 0, len(x))
    return (c[hi] - c[lo]) / (hi - lo)


def _resonator(x: np.ndarray, freq: float, bandwidth: float) -> np.ndarray:
    """A two-pole formant resonance, normalised to unit gain at its centre."""
    r = math.exp(-math.pi * bandwidth / SAMPLE_RATE)
    theta = 2 * math.pi * freq / SAMPLE_RATE
    a = [1.0, -2 * r * math.cos(theta), r * r]
    gain = abs(1 - r) * math.sqrt(1 - 2 * r * math.cos(2 * theta) + r * r)
    return lfilter([gain], a, x)


def _synth_voice(label: str, intensity: float, speaker: Speaker, rng: np.random.Generator) -> np.ndarray:
    """1-4 s of 'speech': voiced harmonic syllables in phrases separated by pauses, plus noise.

    Pitch and envelopes are computed at a 1 kHz control rate; the audio-rate work is float32,
    so a clip costs a few milliseconds.
    """
    p = _voice_params(label, intensity, rng)
    rate = speaker.rate * max(p["rate"], 0.4)
    n_syll = int(rng.integers(3, 13))
    durations = rng.lognormal(np.log(1.0 / rate), 0.25, n_syll)
    pauses = np.where(rng.random(n_syll) < 0.25, rng.uniform(0.12, 0.4, n_syll), 0.0)
    pauses[0] = rng.uniform(0.08, 0.25)  # lead-in silence
    starts = np.cumsum(pauses + durations) - durations
    ends = starts + durations
    trail = rng.uniform(0.08, 0.2)
    fits = ends + trail <= 4.0
    fits[:2] = True
    starts, durations = starts[fits], durations[fits]
    total_ms = int(round(float(np.clip(starts[-1] + durations[-1] + trail, 1.0, 4.0)) * 1000))
    n = total_ms * (SAMPLE_RATE // 1000)

    # control rate (1 kHz): which syllable, how far into it (0..1), envelopes and pitch
    t = np.arange(total_ms) / 1000.0
    syl = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(starts) - 1)
    u = (t - starts[syl]) / durations[syl]
    inside = (u >= 0) & (u < 1)
    voiced = inside & (u >= 0.2)
    env = np.where(voiced, np.sin(np.pi * np.clip((u - 0.2) / 0.8, 0, 1)) ** 0.6, 0.0)
    consonant = np.where(inside & (u < 0.2), np.sin(np.pi * np.clip(u / 0.2, 0, 1)), 0.0)
    accents = rng.normal(0.0, max(p["range_st"], 0.1), len(starts))
    x = t / t[-1]
    semitones = (p["level_st"] + accents[syl] - 1.0 * x + p["terminal_st"] * np.clip((x - 2 / 3) * 3, 0, 1)
                 + p["tremor_st"] * np.sin(2 * np.pi * 6.0 * t + rng.uniform(0, 2 * np.pi)))
    semitones = _box_smooth(semitones, 40)
    jitter = np.repeat(rng.normal(0.0, max(p["jitter"], 0.0), total_ms // 5 + 1), 5)[:total_ms]
    shimmer = np.repeat(rng.normal(0.0, 2.0 * max(p["jitter"], 0.0), total_ms // 10 + 1), 10)[:total_ms]
    f0 = speaker.f0_hz * 2.0 ** (semitones / 12.0) * (1.0 + jitter)

    # audio rate: a harmonic source read from a one-period wavetable, sum_k k^-tilt sin(2 pi k x),
    # built by an inverse FFT; control values are held for each 1 ms (16 samples)
    hold = SAMPLE_RATE // 1000
    phase = np.cumsum(np.repeat(f0 / SAMPLE_RATE, hold))
    k = np.arange(1, max(2, int(7000 // f0.max())) + 1)
    spectrum = np.zeros(513, dtype=complex)
    spectrum[k] = -0.5j * 1024 * k ** -max(p["tilt"], 0.3)
    table = np.fft.irfft(spectrum, 1024).astype(np.float32)
    source = table[((phase - np.floor(phase)) * 1024).astype(np.int32) & 1023]
    env_a = np.repeat((env * (1.0 + shimmer)).astype(np.float32), hold)
    f1, f2 = speaker.formants
    voice = source * env_a
    voice = (_resonator(voice, f1, 90.0) + 0.6 * _resonator(voice, f2, 120.0)).astype(np.float32)
    rms = float(np.sqrt(np.mean(voice[env_a > 0.05] ** 2))) if (env_a > 0.05).any() else 1.0

    # aspiration and frication: high-passed white noise under the envelopes; a room noise floor
    white = rng.random(n + 1, dtype=np.float32) * np.float32(2 * math.sqrt(3)) - np.float32(math.sqrt(3))
    noise_env = np.repeat((max(p["breath"], 0.0) * 3.0 * env + 0.25 * consonant).astype(np.float32), hold)
    level = 10 ** ((-26.0 + speaker.gain_db + p["energy_db"]) / 20.0)
    signal = np.float32(level / rms) * voice + np.float32(level) * noise_env * np.diff(white)
    signal += np.float32(10 ** (-62 / 20)) * white[:n]  # room noise floor
    return np.clip(signal, -0.99, 0.99)


# ---------------------------------------------------------------------- physiology
def _bio_episode(u: Utterance, intensity: float, rng: np.random.Generator) -> None:
    """Set the physiology of an utterance's episode: its arousal (0..1) from the label's arousal,
    with the episode's own strength and noise, and the emotion's autonomic signature."""
    neutral, target = (AROUSAL["neutral"] - 1) / 4, (AROUSAL[u.label] - 1) / 4
    strength = 0.6 + 0.5 * (0.75 * intensity + 0.25 * rng.random())
    u.arousal_bio = float(np.clip(neutral + strength * (target - neutral) + rng.normal(0, 0.06), 0.0, 1.0))
    warming, hr_shift = AUTONOMIC.get(u.label, (0.0, 0.0))
    u.warming, u.hr_shift = strength * warming, strength * hr_shift


def _episodes(utts: list[Utterance], times: np.ndarray, value: Callable[[Utterance], float], rest: float) -> np.ndarray:
    """A per-utterance value over the session: ``rest`` between utterances, ``value(u)`` from
    1.5 s before speech to 1 s after it (physiology anticipates and outlasts the utterance)."""
    level = np.full(len(times), rest)
    for u in utts:
        lo, hi = np.searchsorted(times, [u.onset - 1.5, u.onset + u.duration + 1.0])
        level[lo:hi] = value(u)
    return level


def _slow_drift(n: int, sd: float, rng: np.random.Generator, tau: float = 250.0, rate: int = E4_RATE) -> np.ndarray:
    """A mean-reverting wander (AR(1), time constant ``tau`` s, stationary sd ``sd``, ``rate``
    samples per second) that starts at 0: slow physiology that does not run away."""
    pole = 1.0 - 1.0 / (tau * rate)
    steps = rng.normal(0.0, sd * math.sqrt(1.0 - pole * pole), n)
    return lfilter([1.0], [1.0, -pole], steps)


def _eda(speaker: Speaker, utts: list[Utterance], n: int, rng: np.random.Generator) -> np.ndarray:
    """Tonic level (per speaker, slowly drifting) + phasic SCRs whose rate and size follow arousal."""
    dt = 1.0 / E4_RATE
    tonic = speaker.eda_tonic * np.exp(_slow_drift(n, 0.15, rng))
    impulses = np.zeros(n)
    for u in utts:
        a = u.arousal_bio
        onsets = []
        if rng.random() < 0.05 + 0.9 * a * a:  # the response to the utterance itself
            onsets.append(u.onset + rng.uniform(-1.0, 0.8))
        onsets += list(u.onset - 1.5 + rng.uniform(0, u.duration + 2.5, rng.poisson(0.4 * a * a * (u.duration + 2.5))))
        for onset in onsets:
            i = int(round(onset / dt))
            if 0 <= i < n:
                impulses[i] += speaker.eda_gain * (0.1 + 1.2 * a * a) * rng.lognormal(0.0, 0.3)
    spontaneous = rng.integers(0, n, rng.poisson(0.02 * n * dt))  # non-specific SCRs
    np.add.at(impulses, spontaneous, speaker.eda_gain * 0.3 * rng.lognormal(0.0, 0.4, len(spontaneous)))
    kt = np.arange(0, 20, dt)
    kernel = np.exp(-kt / 4.0) - np.exp(-kt / 0.7)  # bi-exponential SCR shape (rise ~1 s, decay ~4 s)
    phasic = np.convolve(impulses, kernel / kernel.max())[:n]
    return np.maximum(tonic + phasic + rng.normal(0.0, 0.003, n), 0.05)


def _temp(speaker: Speaker, utts: list[Utterance], times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Skin temperature: per-speaker level, slow drift, a drop while aroused (vasoconstriction)
    plus the emotion's own warming or cooling, recovering with a 30 s time constant."""
    n, dt = len(times), 1.0 / E4_RATE
    drift = _slow_drift(n, 0.2, rng)
    arousal = _episodes(utts, times, lambda u: u.arousal_bio, rest=0.3)
    rate = -0.06 * (arousal - 0.3) + _episodes(utts, times, lambda u: u.warming, rest=0.0)  # °C per second
    response = lfilter([dt], [1.0, -(1.0 - dt / 30.0)], rate)
    return speaker.temp_base + drift + response + rng.normal(0.0, 0.01, n)


def _beats(speaker: Speaker, utts: list[Utterance], length: float, rng: np.random.Generator) -> np.ndarray:
    """Beat times (multiples of 1/64 s) from a heart rate that rises with arousal (tau 1.5 s)
    and breathes (respiratory sinus arrhythmia)."""
    times = np.arange(int(length * BEAT_GRID)) / BEAT_GRID
    target = (speaker.hr_base + 34.0 * (_episodes(utts, times, lambda u: u.arousal_bio, rest=0.3) - 0.3)
              + _episodes(utts, times, lambda u: u.hr_shift, rest=0.0))
    alpha = 1.0 / (1.5 * BEAT_GRID)
    hr = lfilter([alpha], [1.0, -(1.0 - alpha)], target - target[0]) + target[0]
    hr += 4.0 * np.sin(2 * np.pi * 0.25 * times + rng.uniform(0, 2 * np.pi))
    hr += _slow_drift(len(times), 3.0, rng, tau=15.0, rate=BEAT_GRID)  # slower variability
    hr += _box_smooth(rng.normal(0.0, 16.0, len(times)), BEAT_GRID)  # beat-to-beat variability (sd ~2 bpm)
    hr = np.clip(hr, 55.0, 110.0)
    count = np.cumsum(hr / 60.0) / BEAT_GRID
    index = np.searchsorted(count, np.arange(1, int(count[-1]) + 1))
    return index / BEAT_GRID


# -------------------------------------------------------------------------- writers
def _datetimes(start: int, ms: np.ndarray) -> list[str]:
    """KEMDy20's datetime column: ``YYYY-MMDD-HHMM-SS-mmm`` (UTC, so it does not depend on the machine)."""
    stamps = np.datetime_as_string(np.datetime64(start, "s") + ms.astype("timedelta64[ms]"), unit="ms")
    return [f"{s[0:4]}-{s[5:7]}{s[8:10]}-{s[11:13]}{s[14:16]}-{s[17:19]}-{s[20:23]}" for s in stamps]


def _tags(utts: list[Utterance], times_ms: np.ndarray) -> list[str]:
    """The segment id for each time inside an utterance [onset, onset + duration), else ''."""
    onsets = np.array([u.onset_ms for u in utts])
    ends = onsets + np.array([u.duration_ms for u in utts])
    j = np.searchsorted(onsets, times_ms, side="right") - 1
    inside = (j >= 0) & (times_ms < ends[np.clip(j, 0, None)])
    return [utts[i].id if ok else "" for i, ok in zip(j, inside)]


def _write_text(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))


def _write_wav(path: Path, audio: np.ndarray) -> None:
    """16 kHz mono PCM16 WAV, encoded in memory and written in one go."""
    buffer = io.BytesIO()
    sf.write(buffer, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


def _write_e4_signal(path: Path, start: int, values: np.ndarray, tags: list[str], fmt: str) -> None:
    stamps = _datetimes(start, np.arange(len(values)) * (1000 // E4_RATE))
    lines = [f"{start:.6f},{stamps[0]}", f"{E4_RATE:.6f},hz"]
    lines += [f"{v:{fmt}},{d},{tag}" if tag else f"{v:{fmt}},{d}" for v, d, tag in zip(values, stamps, tags)]
    _write_text(path, lines)


def _write_ibi(path: Path, start: int, beats: np.ndarray, tags: list[str]) -> None:
    ticks = np.round(beats * BEAT_GRID).astype(np.int64)
    stamps = _datetimes(start, ticks * 1000 // BEAT_GRID)
    lines = [f"{start:.6f},IBI,{_datetimes(start, np.zeros(1))[0]}"]
    for i in range(1, len(beats)):  # E4 keeps a beat only with its inter-beat interval
        if tags[i] is None:
            continue
        row = f"{beats[i]:.6f},{beats[i] - beats[i - 1]:.6f},{stamps[i]}"
        lines.append(f"{row},{tags[i]}" if tags[i] else row)
    _write_text(path, lines)


def _session(speaker: Speaker, utts: list[Utterance], root: Path, seed: int, index: int) -> None:
    """Write the speaker's EDA/TEMP/IBI files; mark utterances whose IBI is missing."""
    rng = _rng(seed, 5, index)
    length = utts[-1].onset + utts[-1].duration + 10.0
    n = int(length * E4_RATE)
    times = np.arange(n) / E4_RATE
    tags = _tags(utts, np.arange(n) * (1000 // E4_RATE))
    eda = _eda(speaker, utts, n, rng)
    temp = _temp(speaker, utts, times, rng)
    beats = _beats(speaker, utts, length, rng)

    # IBI: some utterances lose all their beats (poor contact), and between utterances E4
    # drops beats often; a beat row is ``None`` when dropped
    beat_tags: list[str | None] = list(_tags(utts, beats * 1000))
    lost = {u.id for u in utts if rng.random() < speaker.p_no_ibi}
    gap_drop = rng.random(len(beats)) < 0.3
    for i, tag in enumerate(beat_tags):
        if (tag and tag in lost) or (not tag and gap_drop[i]):
            beat_tags[i] = None
    kept = {tag for tag in beat_tags[1:] if tag}
    for u in utts:
        u.has_ibi = u.id in kept

    start = speaker.session_start
    _write_e4_signal(root / "EDA" / f"{speaker.name}.csv", start, eda, tags, ".6f")
    _write_e4_signal(root / "TEMP" / f"{speaker.name}.csv", start, temp, tags, ".2f")
    _write_ibi(root / "IBI" / f"{speaker.name}.csv", start, beats, beat_tags)


# --------------------------------------------------------------------------- driver
MANIFEST_COLUMNS = ("id", "label", "group", "split", "text", "audio", "eda", "temp", "ibi", "bio_format", "bio_tag",
                    "bio_start", "bio_end", "target_arousal", "target_valence")
OWN_FOLDERS = ("wav", "EDA", "TEMP", "IBI")


def _prepare_folder(root: Path) -> None:
    """Clear a previous demo corpus's own folders; refuse to write over anything else."""
    present = [name for name in OWN_FOLDERS if (root / name).exists()]
    if present and not (root / "corpus.csv").is_file():
        raise FileExistsError(f"{root}: has {', '.join(present)} but no corpus.csv; not a demo corpus, "
                              "refusing to overwrite it (choose an empty folder)")
    for name in present:
        shutil.rmtree(root / name)
    root.mkdir(parents=True, exist_ok=True)


def _rating(center: float, rng: np.random.Generator) -> float:
    """A 1-5 rating as KEMDy20 keeps them: the mean of ten annotators (a multiple of 0.1)."""
    return round(float(np.clip(center + rng.normal(0.0, 0.35), 1.0, 5.0)), 1)


def generate(corpus_dir: str | Path, size: int = 1200, seed: int = 0, progress: bool = True) -> Path:
    """Write the demo corpus under ``corpus_dir`` and return the path of its ``corpus.csv``.

    Layout: ``wav/<speaker>/<id>.wav``, ``EDA|TEMP|IBI/<speaker>.csv`` and ``corpus.csv``
    (a generic manifest with paths relative to ``corpus_dir``). The same ``seed`` gives
    byte-identical files.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    root = Path(corpus_dir)
    speakers = _plan_speakers(size, seed)
    labels = _assign_labels(speakers, seed)
    _prepare_folder(root)

    # a fixed session start derived from the seed: 2020-07-01 09:00 UTC plus whole days
    clock = 1_593_594_000 + (seed % 3650) * 86_400
    rows = []
    for index, speaker in enumerate(tqdm(speakers, desc="demo corpus", unit="speaker", disable=not progress)):
        text_rng, voice_rng, bio_rng = _rng(seed, 3, index), _rng(seed, 4, index), _rng(seed, 6, index)
        rating_rng, intensity_rng = _rng(seed, 7, index), _rng(seed, 8, index)
        utts, onset_ms = [], 10_000
        for k, label in enumerate(labels[speaker.name]):
            u = Utterance(id=f"demo_{speaker.name}_{k + 1:04d}", label=label)
            intensity = float(intensity_rng.random())  # how strongly this utterance feels its emotion
            u.text = _sentence(label, intensity, text_rng)
            u.audio = _synth_voice(label, intensity, speaker, voice_rng)
            _bio_episode(u, intensity, bio_rng)
            u.onset_ms = onset_ms
            onset_ms += u.duration_ms + int(bio_rng.integers(2000, 8000))
            utts.append(u)
            _write_wav(root / "wav" / speaker.name / f"{u.id}.wav", u.audio)
        speaker.session_start = clock
        clock += int(math.ceil((onset_ms / 1000 + 10.0) / 600.0)) * 600 + 600
        _session(speaker, utts, root, seed, index)
        for u in utts:
            start = speaker.session_start + u.onset_ms / 1000
            rows.append({
                "id": u.id, "label": u.label, "group": speaker.name, "split": speaker.split, "text": u.text,
                "audio": f"wav/{speaker.name}/{u.id}.wav", "eda": f"EDA/{speaker.name}.csv",
                "temp": f"TEMP/{speaker.name}.csv", "ibi": f"IBI/{speaker.name}.csv" if u.has_ibi else "",
                "bio_format": "kemdy20", "bio_tag": u.id, "bio_start": f"{start:.3f}",
                "bio_end": f"{start + u.duration:.3f}",
                "target_arousal": f"{_rating(AROUSAL[u.label], rating_rng):.1f}",
                "target_valence": f"{_rating(VALENCE[u.label], rating_rng):.1f}",
            })

    rows.sort(key=lambda row: row["id"])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = root / "corpus.csv"
    path.write_bytes(buffer.getvalue().encode("utf-8"))
    return path
