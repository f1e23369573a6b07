"""Pixel chunks with PyAV: encode a video into independently decodable chunks, decode one chunk.

Chunk format ("annexb"): the raw H.264 / H.265 elementary stream of one chunk in Annex-B
byte-stream form (start codes, no container), starting with its parameter sets (SPS/PPS,
and VPS for H.265) and an IDR frame, with closed GOPs so nothing refers to another chunk.
No container means no per-chunk overhead (an MP4 box tree or MPEG-TS packetisation costs
1-10 % at 100 kbps) and any decoder can start on any chunk. File extensions: ``.h264``,
``.h265``. Frame rate is not in the bitstream; it lives in the manifest.

One encoder runs over the whole video with a forced keyframe every chunk, so rate control
sees the whole video (as a VOD encode does) rather than restarting at every chunk; the
stream is then cut in front of each keyframe. Encoders use one thread: the caller
parallelises across videos.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

import numpy as np

CONTAINER = "annexb"
ENCODERS = {"h264": "libx264", "hevc": "libx265"}
DECODERS = {"h264": "h264", "hevc": "hevc"}
EXTENSIONS = {"h264": "h264", "hevc": "h265"}


class ChunkDecodeError(ValueError):
    """A pixel chunk could not be decoded (corrupt, truncated, wrong codec)."""


class ChunkEncodeError(RuntimeError):
    """The encoder is missing or failed."""


def available_codecs() -> list[str]:
    """Pixel codecs whose encoder is present in this PyAV build."""
    import av

    return [c for c, enc in ENCODERS.items() if enc in av.codecs_available]


def encoder_settings(codec: str, frames_per_chunk: int, preset: str = "medium") -> dict:
    """Encoder options recorded in the manifest (and used by ``PixelEncoder``)."""
    if codec not in ENCODERS:
        raise ValueError(f"unknown pixel codec {codec!r}; known: {', '.join(ENCODERS)}")
    k = int(frames_per_chunk)
    if codec == "h264":
        params = f"keyint={k}:min-keyint={k}:scenecut=0:open-gop=0:threads=1:log-level=error"
        return {"name": "libx264", "preset": preset, "x264-params": params}
    params = (f"keyint={k}:min-keyint={k}:scenecut=0:open-gop=0:repeat-headers=1:"
              "pools=1:frame-threads=1:log-level=error")
    return {"name": "libx265", "preset": preset, "x265-params": params}


class PixelEncoder:
    """Encode one video, chunk by chunk, at one target bitrate.

    codec: ``h264`` or ``hevc``. bitrate_kbps: target average bitrate (kbps).
    width / height: frame size (pixels, even). fps: frames per second.
    frames_per_chunk: frames in each chunk (a keyframe starts every chunk).
    Feed RGB uint8 frames with ``add``; each call returns the chunks completed so far
    (bytes); ``finish`` returns the rest.
    """

    def __init__(self, codec: str, bitrate_kbps: float, width: int, height: int, fps: float,
                 frames_per_chunk: int, preset: str = "medium"):
        import av

        settings = encoder_settings(codec, frames_per_chunk, preset)
        if settings["name"] not in av.codecs_available:
            raise ChunkEncodeError(f"encoder {settings['name']} is not in this PyAV build")
        if width % 2 or height % 2:
            raise ValueError(f"width and height must be even for 4:2:0, got {width}x{height}")
        self.codec = codec
        self.width = width
        self.height = height
        self.frames_per_chunk = int(frames_per_chunk)
        cc = av.CodecContext.create(settings["name"], "w")
        cc.width = width
        cc.height = height
        cc.pix_fmt = "yuv420p"
        rate = Fraction(fps).limit_denominator(1001)
        cc.time_base = 1 / rate
        cc.framerate = rate
        cc.bit_rate = int(bitrate_kbps * 1000)
        cc.gop_size = self.frames_per_chunk
        cc.options = {k: v for k, v in settings.items() if k != "name"}
        self._cc = cc
        self._next_pts = 0
        self._current = bytearray()
        self._started = False
        self._done: list[bytes] = []

    def _take(self, packets: Iterable) -> None:
        for p in packets:
            if p.is_keyframe and self._started:
                self._done.append(bytes(self._current))
                self._current = bytearray()
            self._started = True
            self._current += bytes(p)

    def add(self, frames) -> list[bytes]:
        """Encode frames; returns the chunks completed so far.

        frames: (N, H, W, 3) uint8 RGB, or the list ``yuv_frames`` made of them (convert
        once when several encoders take the same frames).
        """
        import av

        if isinstance(frames, np.ndarray):
            frames = yuv_frames(frames, self.width, self.height)
        for vf in frames:
            vf.pts = self._next_pts
            # Forcing I-frames at chunk starts backs up keyint (which x265 may place a frame
            # late when a scene cut option is on).
            is_start = self._next_pts % self.frames_per_chunk == 0
            vf.pict_type = av.video.frame.PictureType.I if is_start else \
                av.video.frame.PictureType.NONE
            self._next_pts += 1
            self._take(self._cc.encode(vf))
        out, self._done = self._done, []
        return out

    def finish(self) -> list[bytes]:
        """Flush the encoder; returns the remaining chunks."""
        self._take(self._cc.encode(None))
        if self._current:
            self._done.append(bytes(self._current))
            self._current = bytearray()
        out, self._done = self._done, []
        return out


def yuv_frames(frames: np.ndarray, width: int, height: int) -> list:
    """RGB uint8 frames (N, H, W, 3) as yuv420p ``av.VideoFrame`` objects for ``add``."""
    import av

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (height, width, 3):
        raise ValueError(f"expected uint8 frames (N, {height}, {width}, 3), "
                         f"got {frames.dtype} {frames.shape}")
    return [av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            .reformat(format="yuv420p") for f in frames]


def encode_chunks(frames: np.ndarray, codec: str, bitrate_kbps: float, fps: float,
                  frames_per_chunk: int, preset: str = "medium") -> list[bytes]:
    """Encode a whole clip (N, H, W, 3) uint8 RGB into independently decodable chunks."""
    enc = PixelEncoder(codec, bitrate_kbps, frames.shape[2], frames.shape[1], fps,
                       frames_per_chunk, preset)
    return enc.add(frames) + enc.finish()


def decode_pixel_chunk(data: bytes, codec: str, expected_frames: int | None = None) -> np.ndarray:
    """Decode one chunk to RGB frames, shape (frames, H, W, 3) uint8.

    data: the chunk file's bytes. codec: ``h264`` or ``hevc``.
    expected_frames: when given, a different frame count is an error (a truncated chunk
    can decode to fewer frames without the decoder complaining).
    Raises ``ChunkDecodeError`` on anything the decoder rejects or when no frame comes out.
    """
    import av

    if codec not in DECODERS:
        raise ChunkDecodeError(f"unknown pixel codec {codec!r}; known: {', '.join(DECODERS)}")
    if not data:
        raise ChunkDecodeError(f"empty {codec} chunk")
    cc = av.CodecContext.create(DECODERS[codec], "r")
    # Threads would add latency and contend with other decode workers on small frames.
    cc.thread_count = 1
    # Report bitstream errors instead of concealing them with grey blocks.
    cc.options = {"err_detect": "crccheck+bitstream+buffer+explode"}
    frames: list[np.ndarray] = []
    try:
        packets = list(cc.parse(bytes(data))) + list(cc.parse(None))
        for p in packets:
            frames.extend(f.to_ndarray(format="rgb24") for f in cc.decode(p))
        frames.extend(f.to_ndarray(format="rgb24") for f in cc.decode(None))
    except av.FFmpegError as exc:
        raise ChunkDecodeError(f"corrupt {codec} chunk ({len(data)} bytes): {exc}") from None
    if not frames:
        raise ChunkDecodeError(f"corrupt {codec} chunk ({len(data)} bytes): no frame decoded")
    if expected_frames is not None and len(frames) != expected_frames:
        raise ChunkDecodeError(f"{codec} chunk ({len(data)} bytes) decoded to {len(frames)} "
                               f"frames, expected {expected_frames}")
    return np.stack(frames)
