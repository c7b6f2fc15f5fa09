#!/usr/bin/env python3
"""OpenAI-compatible speech-to-text fixture engine built on pocketsphinx.

Test-only stand-in for a real transcription engine (whisper.cpp, faster-whisper
servers, ...). It speaks the subset of `POST /v1/audio/transcriptions` that
Carillon uses, runs fully offline with the US-English model shipped inside the
pocketsphinx wheel, and prints `listening on http://127.0.0.1:PORT` once ready
so a test harness can read the port from stdout.

    python engine.py --port 0 [--delay-seconds X]
"""
import argparse
import email.parser
import email.policy
import json
import re
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pocketsphinx import Decoder

MODEL_ID = "pocketsphinx-en-us"
TARGET_RATE = 16000  # the bundled acoustic model is trained on 16 kHz audio
FRAMES_PER_SECOND = 100  # pocketsphinx default frame rate (-frate)
MAX_BODY = 25 * 1024 * 1024  # OpenAI's documented upload limit
FORMATS = ("json", "text", "verbose_json")


class BadRequest(Exception):
    status = 400


class TooLarge(BadRequest):
    status = 413


# --- audio ------------------------------------------------------------------

def read_wav(data):
    """Return (mono int16 samples as a list, sample rate) from a RIFF/WAVE blob.

    Hand-rolled instead of the `wave` module because Python 3.11's `wave`
    rejects WAVE_FORMAT_EXTENSIBLE headers (ffmpeg/browsers emit them) and
    streamed WAVs whose data size is 0 or 0xFFFFFFFF."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise BadRequest("file is not a RIFF/WAVE file")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            if size < 16:
                raise BadRequest("WAV fmt chunk too short")
            fmt = struct.unpack_from("<HHIIHH", data, body)
        elif cid == b"data":
            if fmt is None:
                raise BadRequest("WAV data chunk before fmt chunk")
            tag, channels, rate, _, _, bits = fmt
            if tag not in (1, 0xFFFE) or bits != 16 or channels not in (1, 2) or rate <= 0:
                raise BadRequest("only 16-bit PCM mono/stereo WAV is supported")
            pcm = data[body:] if size in (0, 0xFFFFFFFF) else data[body:body + size]
            pcm = pcm[:len(pcm) // (2 * channels) * 2 * channels]
            samples = struct.unpack("<%dh" % (len(pcm) // 2), pcm)
            if channels == 2:  # downmix by averaging left and right
                samples = [(a + b) // 2 for a, b in zip(samples[0::2], samples[1::2])]
            return list(samples), rate
        pos = body + size + (size & 1)  # chunks are word-aligned
    raise BadRequest("WAV has no data chunk")


def resample(samples, rate):
    """Linear-interpolation resampling to 16 kHz; good enough for recognition."""
    if rate == TARGET_RATE or not samples:
        return samples
    step, last = rate / TARGET_RATE, len(samples) - 1
    out = []
    for i in range(int(len(samples) / step)):
        x = i * step
        j = int(x)
        k = min(j + 1, last)
        out.append(int(samples[j] + (samples[k] - samples[j]) * (x - j)))
    return out


# --- recognition -------------------------------------------------------------

class Recognizer:
    """One decoder loaded at startup, guarded by a lock: decoders are not
    thread-safe, and pocketsphinx holds the GIL while decoding, so a pool of
    decoders would not decode in parallel anyway (measured)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._decoder = self._new()

    @staticmethod
    def _new():
        # dither: espeak-ng/WAV padding is digital silence (exact zeros), whose
        # log energy wrecks the cepstral features; tiny dither noise fixes that
        # (word recall on espeak-ng speech ~0.3 -> ~0.7). Its RNG is seeded, so
        # output stays deterministic. loglevel: pocketsphinx is very chatty.
        return Decoder(loglevel="FATAL", dither=True)

    def transcribe(self, samples):
        if len(samples) < TARGET_RATE // 10:
            return []  # pocketsphinx fails on (near-)empty input; nothing to hear
        with self._lock:
            dec = self._decoder
            try:
                # Reset live CMN and the dither RNG, so the answer does not
                # depend on what was decoded before.
                dec.reinit_feat()
                dec.start_utt()
                dec.process_raw(struct.pack("<%dh" % len(samples), *samples), False, True)
                dec.end_utt()
                segs = [(g.word, g.start_frame, g.end_frame) for g in dec.seg()]
            except Exception:
                self._decoder = self._new()  # it may be stuck mid-utterance
                raise
        # Fillers (<s>, </s>, <sil>, [NOISE], ...) are bracketed;
        # "word(2)" names an alternate pronunciation of "word".
        return [{"word": re.sub(r"\(\d+\)$", "", word),
                 "start": start / FRAMES_PER_SECOND,
                 "end": (end + 1) / FRAMES_PER_SECOND}
                for word, start, end in segs if not word.startswith(("<", "[", "+"))]


# --- HTTP --------------------------------------------------------------------

def parse_multipart(content_type, body):
    """Return {field name: bytes} using the stdlib email parser (cgi is deprecated)."""
    head = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not msg.is_multipart():
        raise BadRequest("expected a multipart/form-data body")
    fields = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[name] = part.get_payload(decode=True) or b""
    return fields


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so pooled HTTP clients work
    server_version = "carillon-stt-fixture/1"

    def do_GET(self):
        self.started, self.audio = time.monotonic(), ""
        if self.path == "/health":
            self.reply(200, b"ok", "text/plain")
        elif self.path == "/v1/models":
            self.reply_json(200, {"object": "list", "data": [
                {"id": MODEL_ID, "object": "model", "owned_by": "carillon-tests"}]})
        else:
            self.error(404, "not found: %s" % self.path, "not_found_error")

    def do_POST(self):
        self.started, self.cpu, self.audio = time.monotonic(), time.thread_time(), ""
        try:
            body = self.read_body()  # always drain it so keep-alive stays in sync
        except BadRequest as e:
            self.close_connection = True  # the body was not (fully) read
            return self.error(e.status, str(e))
        if self.path.split("?")[0] != "/v1/audio/transcriptions":
            return self.error(404, "not found: %s" % self.path, "not_found_error")
        try:
            self.transcribe(body)
        except BadRequest as e:
            self.error(400, str(e))
        except Exception as e:  # answer instead of dropping the connection
            self.error(500, "%s: %s" % (type(e).__name__, e), "server_error")

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            # Clients streaming a body of unknown length send it chunked.
            body = b""
            while size := int(self.rfile.readline().split(b";")[0] or b"0", 16):
                body += self.rfile.read(size)
                self.rfile.readline()  # CRLF after each chunk
                if len(body) > MAX_BODY:
                    raise TooLarge("request body too large")
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # optional trailers
            return body
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise TooLarge("request body too large")
        return self.rfile.read(length)

    def transcribe(self, body):
        ctype = self.headers.get("Content-Type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            raise BadRequest("Content-Type must be multipart/form-data")
        fields = parse_multipart(ctype, body)
        if not fields.get("file"):
            raise BadRequest("missing required field: file")
        # model and language are accepted and ignored: there is one English model.
        fmt = fields.get("response_format", b"").decode("utf-8", "replace") or "json"
        if fmt not in FORMATS:
            raise BadRequest("unsupported response_format: %s" % fmt)
        try:
            samples, rate = read_wav(fields["file"])
        except struct.error:  # a chunk header promised more bytes than sent
            raise BadRequest("truncated WAV file")
        duration = len(samples) / rate
        words = self.server.recognizer.transcribe(resample(samples, rate))
        text = " ".join(w["word"] for w in words)
        self.audio = "%d bytes %.2fs@%dHz cpu=%.0fms" % (
            len(fields["file"]), duration, rate, (time.thread_time() - self.cpu) * 1000)
        if self.server.delay:  # outside the lock, so slow requests overlap
            time.sleep(self.server.delay)
        if fmt == "text":
            self.reply(200, (text + "\n").encode(), "text/plain; charset=utf-8")
        elif fmt == "json":
            self.reply_json(200, {"text": text})
        else:
            segments = [{"id": 0, "start": words[0]["start"], "end": words[-1]["end"],
                         "text": text}] if words else []
            self.reply_json(200, {"task": "transcribe", "language": "english",
                                  "duration": round(duration, 3), "text": text,
                                  "segments": segments, "words": words})

    def error(self, status, message, kind="invalid_request_error"):
        self.reply_json(status, {"error": {"message": message, "type": kind,
                                           "param": None, "code": None}})

    def reply_json(self, status, obj):
        self.reply(status, json.dumps(obj).encode(), "application/json")

    def reply(self, status, payload, ctype):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        # One line per request; never the transcript (it is user speech).
        sys.stderr.write("%s %s %s -> %d in %.0fms %s\n" % (time.strftime("%H:%M:%S"),
            self.command, self.path, status, (time.monotonic() - self.started) * 1000,
            self.audio))

    def log_message(self, *args):
        pass  # replaced by the single line written in reply()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--delay-seconds", type=float, default=0.0,
                    help="sleep this long before answering each transcription")
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True  # don't let a stuck client block shutdown
    server.delay = args.delay_seconds
    server.recognizer = Recognizer()  # loads the model before "listening"
    print("listening on http://127.0.0.1:%d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
