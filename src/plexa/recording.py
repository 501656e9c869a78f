"""Read plexa's MCAP recordings: ``plexa.recording.open(path)`` (see ``docs/recording.md``).

>>> import plexa.recording
>>> with plexa.recording.open("imaging.mcap") as rec:    # doctest: +SKIP
...     for msg in rec.messages(["camera.frames"]):
...         print(msg.sequence, msg.time, msg.obj.shape)
"""

from __future__ import annotations

from plexa.data.recording import (
    ChannelInfo,
    Compression,
    Message,
    Pickled,
    Recording,
    RecordingWriter,
)
from plexa.data.recording import open_recording as open

__all__ = [
    "ChannelInfo",
    "Compression",
    "Message",
    "Pickled",
    "Recording",
    "RecordingWriter",
    "open",
]
