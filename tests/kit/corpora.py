"""Writers of tiny corpora in the REAL on-disk formats (shared/docs/datasets.md), byte for byte.

Each ``write_<corpus>(root)`` builds a small tree under ``root`` and returns a description of
what it wrote (the expected labels, skips and signal gaps) so that tests compare the adapter's
output with values fixed here by hand, not recomputed by the code under test.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import soundfile as sf


def write_wav(path: Path, seconds: float = 0.25, sr: int = 16000, channels: int = 1, seed: int = 0,
              fmt: str = "WAV") -> Path:
    """Low-level noise as 16-bit PCM (the corpora's sample format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = (0.1 * rng.standard_normal((int(seconds * sr), channels))).astype(np.float32)
    sf.write(path, data if channels > 1 else data[:, 0], sr, subtype="PCM_16", format=fmt)
    return path


# ======================================================================================
# KEMDy20
# ======================================================================================
#: (segment id, WAV start, WAV end, Total Evaluation Emotion cell, valence, arousal, transcript or None)
KEMDY20_SEGMENTS = {
    1: [
        ("Sess01_script01_User002M_001", "13.828", "18.427", "neutral", "2.5", "3", "n/ 아 친구들도? l/"),
        ("Sess01_script01_User001F_001", "19.002", "21.500", "happy;neutral", "3.6", "3.1", "b/ 응 맞아 /"),
        ("Sess01_script01_User002M_002", "22.010", "25.300", "disqust", "1.7", "3.4", "c/ 그건 좀 (1시)/(한시)에 o/"),
        ("Sess01_script01_User001F_002", "26.000", "27.900", "", "3", "3", "음..."),
        ("Sess01_script01_User001F_003", "28.120", "31.004", "happy", "4.2", "3.8", "l/ 진짜 재밌었어"),
    ],
    2: [
        ("Sess02_script01_User003F_001", "5.100", "7.250", "neutral", "3", "2.9", "안녕하세요"),
        ("Sess02_script01_User004M_001", "8.000", "10.500", "angry", "1.5", "4.1", "n/ 왜 그랬어?"),
        ("Sess02_script01_User003F_002", "11.300", "13.000", "sad", "1.9", "2.2", "그랬구나"),
        ("Sess02_script01_User003F_003", "14.000", "15.000", "neutral", "3", "3", "그래"),  # no wav file
    ],
    3: [
        ("Sess03_script01_User005M_001", "3.000", "5.500", "surprise", "3.3", "4.4", "어 정말?"),
        ("Sess03_script01_User006F_001", "6.000", "8.000", "fear", "2.1", "3.9", "무서워"),
        ("Sess03_script01_User006F_002", "9.000", "10.000", "excited", "4", "4", "우와"),  # outside the class set
    ],
    4: [
        ("Sess04_script01_User007F_001", "2.000", "4.000", "neutral", "3", "3", "네"),
        ("Sess04_script01_User008M_001", "5.000", "7.000", "happy", "4", "3.5", "좋아요"),
    ],
}
KEMDY20_NO_WAV = {"Sess02_script01_User003F_003"}
KEMDY20_NO_IBI = {"Sess01_script01_User001F_003"}
#: TEMP file written without any segment tag (its rows still cover the segments' time)
KEMDY20_TAGLESS_TEMP = ("Sess03_script01_User005M", 3)
KEMDY20_E4_START = 1599023836  # unix time of the first E4 sample of every file


def _e4_datetime(t: float) -> str:
    """KEMDy20's ``YYYY-MMDD-HHMM-SS-mmm`` (local wall-clock time)."""
    import datetime as _dt

    d = _dt.datetime(2020, 9, 2, 14, 17, 16) + _dt.timedelta(seconds=t - KEMDY20_E4_START)
    return f"{d:%Y-%m%d-%H%M-%S}-{d.microsecond // 1000:03d}"


def kemdy20_segment_rows(index: int) -> tuple[int, int]:
    """EDA/TEMP rows [first, last] (4 Hz) tagged for the segment with this per-file index."""
    first = 4 + 12 * index
    return first, first + 7


def write_kemdy20(root: Path) -> dict:
    """A KEMDy20_v1_1 tree: 4 sessions, annotation CSVs, cp949 transcripts, WAVs, E4 files."""
    root = Path(root)
    annotators = [f"Eval{i:02d}{'F' if i % 2 else 'M'}" for i in range(1, 11)]
    header1 = ["Numb", "Wav", " ", "Segment ID", "Total Evaluation", " ", " "]
    header2 = [" ", "start", "end", " ", "Emotion", "Valence", "Arousal"]
    for name in annotators:
        header1 += [name, " ", " "]
        header2 += ["Emotion", "Valence", "Arousal"]
    assert len(header1) == len(header2) == 37
    windows: dict[str, tuple[float, float]] = {}
    for session, segments in KEMDY20_SEGMENTS.items():
        lines = [",".join(header1), ",".join(header2)]
        for numb, (seg, ws, we, emo, val, aro, text) in enumerate(segments, start=1):
            votes = []
            for k in range(10):
                votes += [emo.split(";")[k % len(emo.split(";"))] if emo else "neutral", str(2 + k % 3), str(3 + k % 2)]
            lines.append(",".join([str(numb), ws, we, seg, emo, val, aro] + votes))
        ann = root / "annotation" / f"Sess{session:02d}_eval.csv"
        ann.parent.mkdir(parents=True, exist_ok=True)
        ann.write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))

        wav_dir = root / "wav" / f"Session{session:02d}"
        for i, (seg, *_rest, text) in enumerate(segments):
            if seg not in KEMDY20_NO_WAV:
                write_wav(wav_dir / f"{seg}.wav", seconds=0.2 + 0.05 * i, seed=session * 10 + i)
            (wav_dir / f"{seg}.txt").parent.mkdir(parents=True, exist_ok=True)
            (wav_dir / f"{seg}.txt").write_bytes((text + "\n").encode("cp949"))

        # one E4 file per speaker and script; each segment tags 8 rows (2 s) of EDA/TEMP
        by_speaker: dict[str, list[str]] = {}
        for seg, *_ in segments:
            by_speaker.setdefault(seg.rsplit("_", 1)[0], []).append(seg)
        for stem, segs in by_speaker.items():
            tagged = {}
            for index, seg in enumerate(segs):
                first, last = kemdy20_segment_rows(index)
                for r in range(first, last + 1):
                    tagged[r] = seg
                windows[seg] = (KEMDY20_E4_START + first / 4.0, KEMDY20_E4_START + (last + 1) / 4.0)
            n_rows = 4 + 12 * len(segs) + 8
            rng = np.random.default_rng(len(stem))
            for signal in ("EDA", "TEMP"):
                tagless = signal == "TEMP" and (stem, session) == KEMDY20_TAGLESS_TEMP
                out = [f"{KEMDY20_E4_START},{_e4_datetime(KEMDY20_E4_START)}", "4.000000,hz"]
                for r in range(n_rows):
                    t = KEMDY20_E4_START + r / 4.0
                    value = f"{0.2 + 0.01 * rng.random():.6f}" if signal == "EDA" else f"{33.1 + 0.1 * rng.random():.2f}"
                    cells = [value, _e4_datetime(t)]
                    if r in tagged and not tagless:
                        cells.append(tagged[r])
                    out.append(",".join(cells))
                path = root / signal / f"Session{session:02d}" / f"{stem}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(("\n".join(out) + "\n").encode("ascii"))
            # IBI: beats every ~0.8 s; a beat is tagged when it falls inside a segment's window
            out = [f"{KEMDY20_E4_START},IBI,{_e4_datetime(KEMDY20_E4_START)}"]
            t_rel = 0.59375
            while t_rel < n_rows / 4.0:
                t = KEMDY20_E4_START + t_rel
                cells = [f"{t_rel:.6f}", "0.781250", _e4_datetime(t)]
                seg = next((s for s in segs if windows[s][0] <= t < windows[s][1]), None)
                if seg is not None and seg not in KEMDY20_NO_IBI:
                    cells.append(seg)
                out.append(",".join(cells))
                t_rel += 0.78125
            path = root / "IBI" / f"Session{session:02d}" / f"{stem}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(("\n".join(out) + "\n").encode("ascii"))
    return {"windows": windows}


# ======================================================================================
# RAVDESS
# ======================================================================================
def ravdess_name(modality: int, channel: int, emotion: int, intensity: int, statement: int, repetition: int,
                 actor: int) -> str:
    return "-".join(f"{v:02d}" for v in (modality, channel, emotion, intensity, statement, repetition, actor))


def openface_csv(frames: int = 3) -> str:
    """An OpenFace 2 CSV as in the RAVDESS landmark release: headers with leading spaces."""
    cols = ["frame", "timestamp", "confidence", "success"]
    cols += [f"gaze_0_{a}" for a in "xyz"]
    cols += [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
    cols += [f"{a}_{i}" for a in "XYZ" for i in range(68)]
    cols += ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty", "AU01_r", "AU01_c"]
    lines = [", ".join(cols)]
    for f in range(frames):
        vals = [str(f + 1), f"{f / 30:.3f}", "0.98", "1"] + ["0.1"] * (len(cols) - 4)
        lines.append(", ".join(vals))
    return "\n".join(lines) + "\n"


# ======================================================================================
# CMU-MOSEI
# ======================================================================================
MOSEI_DIMENSIONS = ["sentiment", "happy", "sad", "anger", "surprise", "disgust", "fear"]


def write_csd(path: Path, root_name: str, data: dict[str, tuple[np.ndarray, np.ndarray]], metadata: dict) -> Path:
    """A computational sequence written the way the CMU Multimodal SDK writes it (h5py).

    ``<root>/data/<vid>/features``, ``<root>/data/<vid>/intervals``, ``<root>/metadata/<key>``
    as a (1,) variable-length string dataset holding ``json.dumps(value)`` (what the real
    CMU_MOSI_Opinion_Labels.csd holds: ``'"Opinion Segment Labels"'``, ``'true'``, ``'null'``).
    """
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        root = f.create_group(root_name)
        grp = root.create_group("data")
        for vid, (features, intervals) in data.items():
            v = grp.create_group(vid)
            v.create_dataset("features", data=features)
            v.create_dataset("intervals", data=intervals)
        md = root.create_group("metadata")
        for key, value in metadata.items():
            ds = md.create_dataset(key, (1,), dtype=h5py.special_dtype(vlen=str))
            ds[0] = json.dumps(value)
    return path


def mosei_metadata(root_name: str, dimensions: list[str]) -> dict:
    return {
        "root name": root_name,
        "computational sequence description": "Labels for CMU-MOSEI Dataset",
        "computational sequence version": 1.0,
        "alignment compatible": True,
        "dataset name": "CMU-MOSEI",
        "dataset version": 1.0,
        "creator": "Amir Zadeh",
        "contact": "abagherz@andrew.cmu.edu",
        "featureset bib citation": "@online{amt}",
        "dataset bib citation": "@inproceedings{zadeh2018multimodal}",
        "md5": None,
        "uuid": "00000000-0000-0000-0000-000000000000",
        "dimension names": dimensions,
    }


def write_ravdess_voiced(root: Path, actors=range(1, 25), emotions=(1, 5), statements=(1, 2),
                        seconds: float = 0.6, sr: int = 16000) -> list[str]:
    """Speech-channel RAVDESS clips long and voiced enough for eGeMAPS (F0 found): a harmonic
    tone whose pitch depends on the emotion (neutral 01 lower than the others) and, a little, on
    the actor, plus noise. One clip per actor x emotion x statement; returns the codes.
    """
    root = Path(root)
    names = []
    t = np.arange(int(seconds * sr)) / sr
    for actor in actors:
        for emotion in emotions:
            for statement in statements:
                code = ravdess_name(3, 1, emotion, 1 if emotion == 1 else 2, statement, 1, actor)
                rng = np.random.default_rng([actor, emotion, statement])
                f0 = (120.0 if emotion == 1 else 220.0) + 2.0 * actor + 5.0 * statement
                wave = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3))
                data = (0.2 * wave * np.hanning(len(t)) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
                path = root / f"Actor_{actor:02d}" / f"{code}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, data, sr, subtype="PCM_16")
                names.append(code)
    return names


def write_ravdess(root: Path, landmarks: Path | None = None) -> dict:
    """24 actors x 2 speech clips (neutral 01, angry strong 02) + quirks; optional landmark CSVs.

    Quirks: a song clip (actor 1), a calm clip (actor 2), a stereo FLAC (actor 3), an invalid
    emotion code, a strong neutral (invalid), a .wav/.flac duplicate, a note file and a video.
    """
    root = Path(root)
    names = []
    for actor in range(1, 25):
        d = root / f"Actor_{actor:02d}"
        for code in (ravdess_name(3, 1, 1, 1, 1, 1, actor), ravdess_name(3, 1, 5, 2, 2, 1, actor)):
            write_wav(d / f"{code}.wav", seconds=0.05, sr=48000, seed=actor)
            names.append(code)
    extra = {
        "song": ravdess_name(3, 2, 3, 1, 1, 2, 1),
        "calm": ravdess_name(3, 1, 2, 1, 1, 1, 2),
        "stereo": ravdess_name(3, 1, 4, 1, 2, 2, 3),
    }
    write_wav(root / "Actor_01" / f"{extra['song']}.wav", seconds=0.05, sr=48000)
    write_wav(root / "Actor_02" / f"{extra['calm']}.wav", seconds=0.05, sr=48000)
    write_wav(root / "Actor_03" / f"{extra['stereo']}.flac", seconds=0.05, sr=48000, channels=2, fmt="FLAC")
    write_wav(root / "Actor_02" / f"{ravdess_name(3, 1, 9, 1, 1, 1, 2)}.wav", seconds=0.05, sr=48000)
    write_wav(root / "Actor_03" / f"{ravdess_name(3, 1, 1, 2, 1, 1, 3)}.wav", seconds=0.05, sr=48000)
    write_wav(root / "Actor_04" / f"{ravdess_name(3, 1, 5, 2, 2, 1, 4)}.flac", seconds=0.05, sr=48000, fmt="FLAC")
    (root / "Actor_01" / "notes.txt").write_text("not a clip\n")
    (root / "Actor_05" / f"{ravdess_name(1, 1, 5, 2, 2, 1, 5)}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    if landmarks is not None:
        lm = Path(landmarks)
        (lm / "Actor_01").mkdir(parents=True, exist_ok=True)
        (lm / "Actor_02").mkdir(parents=True, exist_ok=True)
        # actor 1 angry: both audio-video (01) and video-only (02) exist -> 01 wins
        (lm / "Actor_01" / f"{ravdess_name(1, 1, 5, 2, 2, 1, 1)}.csv").write_text(openface_csv())
        (lm / "Actor_01" / f"{ravdess_name(2, 1, 5, 2, 2, 1, 1)}.csv").write_text(openface_csv())
        # actor 2 neutral: only video-only
        (lm / "Actor_02" / f"{ravdess_name(2, 1, 1, 1, 1, 1, 2)}.csv").write_text(openface_csv())
        # a landmark file for a clip that has no audio: matched by nothing
        (lm / f"{ravdess_name(1, 1, 8, 1, 1, 1, 7)}.csv").write_text(openface_csv())
    return {"base": names, **extra}


#: video -> rows of (start, end, [sentiment, happy, sad, anger, surprise, disgust, fear])
MOSEI_LABELS = {
    "-3g5yACwYnA": [
        (0.5, 3.25, [1.0, 0.6666667, 0.0, 0.0, 0.0, 0.0, 0.0]),
        (3.25, 7.0, [-0.3333333, 0.0, 0.3333333, 0.0, 0.0, 0.0, 0.3333333]),
        (7.0, 9.5, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),  # labelled: no emotion
    ],
    "_0efYOjQYRc": [
        (1.0, 4.0, [2.0, 3.0, 0.0, 0.0, 1.6666666, 0.0, 0.0]),
        (4.0, 4.0, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),  # zero-length interval (as in the real MOSI labels)
        (4.5, 6.0, [-2.0, 0.0, 1.0, 2.0, 0.0, 0.6666667, 0.0]),
        (4.5, 6.0, [-1.0, 0.0, 1.0, 2.0, 0.0, 0.6666667, 0.0]),  # duplicate interval, conflicting label
    ],
    "aB3xYz9Q-kM": [
        (0.0, 2.0, [0.6666667, 0.3333333, 0.0, 0.0, 0.0, 0.0, 0.0]),
        (2.0, 5.5, [-0.6666667, 0.0, 0.0, 0.6666667, 0.0, 0.3333333, 0.0]),
    ],
}
MOSEI_TRANSCRIPTS = {
    "-3g5yACwYnA": ["0___0.5___3.25___i really loved this movie", "1___3.25___7.0___but the ending wasn’t great",
                    "2___7.0___9.5___so yeah"],
    "_0efYOjQYRc": ["0___1.0___4.0___WOW that was amazing", "1___4.5___6.0___and then it got ugly"],
    # aB3xYz9Q-kM: no transcript file
}
MOSEI_NO_AUDIO = {"aB3xYz9Q-kM"}


def write_mosei(root: Path) -> Path:
    """CMU_MOSEI_Labels.csd ("All Labels", SDK layout, float32, gzip), WAVs and transcripts."""
    import h5py

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with h5py.File(root / "CMU_MOSEI_Labels.csd", "w") as f:
        grp = f.create_group("All Labels")
        data = grp.create_group("data")
        for vid, rows in MOSEI_LABELS.items():
            v = data.create_group(vid)
            v.create_dataset("features", data=np.array([r[2] for r in rows], np.float32), compression="gzip")
            v.create_dataset("intervals", data=np.array([r[:2] for r in rows], np.float32), compression="gzip")
        md = grp.create_group("metadata")
        for key, value in mosei_metadata("All Labels", MOSEI_DIMENSIONS).items():
            ds = md.create_dataset(key, (1,), dtype=h5py.special_dtype(vlen=str))
            ds[0] = json.dumps(value)
    for vid in MOSEI_LABELS:
        if vid not in MOSEI_NO_AUDIO:
            write_wav(root / "Raw" / "Audio" / "Full" / "WAV_16000" / f"{vid}.wav", seconds=10.0, sr=16000)
    tdir = root / "Raw" / "Transcript" / "Segmented" / "Combined"
    tdir.mkdir(parents=True, exist_ok=True)
    for vid, lines in MOSEI_TRANSCRIPTS.items():
        (tdir / f"{vid}.txt").write_bytes(("\n".join(f"{vid}___{ln}" for ln in lines) + "\n").encode("utf-8"))
    return root


def write_mp4(path: Path, audio: np.ndarray, sr: int = 48000, video: bool = True) -> Path:
    """An MP4 like MELD's clips: an AAC audio track (+ a tiny video track), encoded with PyAV.

    ``audio`` is (channels, samples) float32 in [-1, 1].
    """
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    audio = np.atleast_2d(np.asarray(audio, np.float32))
    layout = "mono" if audio.shape[0] == 1 else "stereo"
    with av.open(str(path), "w", format="mp4") as out:
        vstream = None
        if video:
            vstream = out.add_stream("mpeg4", rate=10)
            vstream.width, vstream.height, vstream.pix_fmt = 32, 32, "yuv420p"
        astream = out.add_stream("aac", rate=sr, layout=layout)
        frame_size = 1024
        for i in range(0, audio.shape[1], frame_size):
            chunk = np.ascontiguousarray(audio[:, i:i + frame_size])
            if chunk.shape[1] < frame_size:
                chunk = np.pad(chunk, ((0, 0), (0, frame_size - chunk.shape[1])))
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = sr
            frame.pts = i
            for packet in astream.encode(frame):
                out.mux(packet)
        for packet in astream.encode(None):
            out.mux(packet)
        if vstream is not None:
            n_frames = max(1, int(audio.shape[1] / sr * 10))
            for k in range(n_frames):
                img = np.full((32, 32, 3), (k * 20) % 255, np.uint8)
                vf = av.VideoFrame.from_ndarray(img, format="rgb24")
                vf.pts = k
                for packet in vstream.encode(vf):
                    out.mux(packet)
            for packet in vstream.encode(None):
                out.mux(packet)
    return path


MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime"
#: per split: raw CSV lines after the header (exactly as the release writes them: CRLF, quotes)
MELD_ROWS = {
    "train": [
        '1,also I was the point person on my company’s transition from the KL-5 to GR-6 system.,Chandler,neutral,neutral,0,0,8,21,"00:16:16,059","00:16:21,731"',
        '2,You must’ve had your hands full.,The Interviewer,neutral,neutral,0,1,8,21,"00:16:21,940","00:16:23,442"',
        '3,"Oh my God, he’s lost it. He’s totally lost it.",Phoebe,sadness,negative,1,0,4,7,"0:36:59,425","0:37:01,439"',
        '4,I donâ€™t know what youâ€™re talking about.,Ross,anger,negative,1,1,4,7,"0:37:01,440","0:37:03,000"',
        '5,Well I\x92m not sure.,Richard’s Date,surprise,positive,1,2,4,7,"00:18:48,251","0:19:08,781"',
        '6,Nestlé Toll House?,Monica,joy,positive,2,0,7,3,"00:18:37,491","00:18:39,867"',
        '7,Whatever.,Monica,excited,positive,2,1,7,3,"00:18:40,000","00:18:41,000"',
        '8,Whatever again.,Monica,disgust,negative,2,1,7,3,"00:18:41,000","00:18:42,000"',
    ],
    "dev": [
        '1,Oh my God!,Rachel,surprise,positive,0,0,5,1,"00:00:01,000","00:00:02,000"',
        '2,"“Good-bye Phoebe and Ursula.” You just wrote this!",Phoebe,fear,negative,0,1,5,1,"00:00:02,500","00:00:04,000"',
    ],
    "test": [
        '1,Why do all you’re coffee mugs have numbers on the bottom?,Mark,surprise,positive,0,0,3,19,"00:14:38,617","00:14:40,205"',
        '2,Oh. That’s so Monica can keep track.,Rachel,anger,negative,0,1,3,19,"00:14:40,374","00:14:47,129"',
        '3,Y’know what?,Chandler,neutral,neutral,1,0,3,19,"00:15:00,000","00:15:01,000"',
    ],
}


def write_meld(root: Path, media: Path | None = None) -> None:
    """The three CSVs (UTF-8, CRLF) and, optionally, mp4 clips in MELD.Raw's folders."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split, lines in MELD_ROWS.items():
        (root / f"{split}_sent_emo.csv").write_bytes(("\r\n".join([MELD_HEADER] + lines) + "\r\n").encode("utf-8"))
    if media is not None:
        write_meld_media(media)


def write_meld_media(media: Path) -> None:
    """mp4 clips (AAC audio) for the fixture's utterances in MELD.Raw's folders; needs PyAV."""
    folders = {"train": Path(media) / "train" / "train_splits", "dev": Path(media) / "dev_splits_complete",
               "test": Path(media) / "test" / "output_repeated_splits_test"}
    sr = 16000
    t = np.arange(int(0.3 * sr)) / sr
    for split, lines in MELD_ROWS.items():
        for k, line in enumerate(lines):
            cells = next(csv.reader([line]))
            dia, utt = cells[5], cells[6]
            if (split, dia, utt) == ("test", "1", "0"):
                continue  # a clip missing from the release
            tone = (0.3 * np.sin(2 * np.pi * (200 + 50 * k) * t)).astype(np.float32)
            write_mp4(folders[split] / f"dia{dia}_utt{utt}.mp4", tone[None], sr, video=(k == 0))
    # macOS resource forks shipped inside MELD.Raw: never samples
    (folders["train"] / "._dia0_utt0.mp4").write_bytes(b"\x00\x05\x16\x07")


E4_T0 = 1644226061  # a real-looking unix start time


def _e4_uniform(path: Path, start: str, rate: str, values: list[str], newline: str = "\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((newline.join([start, rate] + values) + newline).encode("ascii"))


def write_e4_study(root: Path) -> None:
    """Two recordings in the plain E4 export format (as the real Stress-Predict files).

    recA: EDA/TEMP 4 Hz for 100 s; BVP 64 Hz for the first 50 s (CRLF, integer header as in
    the real BVP.csv); HR 1 Hz from +10 s; IBI beats only between +20 s and +60 s; tags at
    +10, +40, +100 s (CRLF). recB: EDA only for 30 s; tags with decimals and no final newline.
    """
    root = Path(root)
    a = root / "recA"
    _e4_uniform(a / "EDA.csv", f"{E4_T0}.000000", "4.000000", [f"{0.1 + 0.001 * i:.6f}" for i in range(400)])
    _e4_uniform(a / "TEMP.csv", f"{E4_T0}.000000", "4.000000", [f"{28.39 + 0.01 * (i % 5):.2f}" for i in range(400)])
    _e4_uniform(a / "BVP.csv", f"{E4_T0}", "64", [f"{np.sin(i / 10):.2f}" for i in range(64 * 50)], newline="\r\n")
    _e4_uniform(a / "HR.csv", f"{E4_T0 + 10}.000000", "1.000000", ["83.00"] * 90)
    ibi = [f"{E4_T0}.000000, IBI"] + [f"{20 + 0.8 * k:.6f},0.800000" for k in range(50)]
    (a / "IBI.csv").write_bytes(("\n".join(ibi) + "\n").encode("ascii"))
    (a / "tags_recA.csv").write_bytes(f"{E4_T0 + 10}\r\n{E4_T0 + 40}\r\n{E4_T0 + 100}\r\n".encode("ascii"))
    (a / "info.txt").write_text("The first row is the initial time of the session expressed as unix timestamp in UTC.\n")
    b = root / "recB"
    _e4_uniform(b / "EDA.csv", f"{E4_T0 + 500}.000000", "4.000000", ["0.2"] * 120)
    (b / "tags_recB.csv").write_bytes(f"{E4_T0 + 500.03:.2f}\n{E4_T0 + 525.77:.2f}".encode("ascii"))


def write_tone_clips(folder: Path, seconds: list[float], seed: int = 0, sr: int = 16000) -> list[dict]:
    """Manifest rows of float WAV clips (a tone per clip, 150 + 40·i Hz, plus noise) of these lengths."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    out = []
    for i, length in enumerate(seconds):
        t = np.arange(int(length * sr)) / sr
        x = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.05 * rng.standard_normal(len(t))
        path = folder / f"c{i}.wav"
        sf.write(path, x.astype(np.float32), sr, subtype="FLOAT")
        out.append({"id": f"c{i}", "audio": str(path), "start": float("nan"), "end": float("nan")})
    return out
