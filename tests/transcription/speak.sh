#!/usr/bin/env bash
# Speak sentences with espeak-ng into one 48 kHz mono 16-bit WAV for tests
# (Chromium's --use-file-for-fake-audio-capture plays it as the microphone).
#
#   speak.sh OUT.wav "first sentence" ["second sentence" ...]
#
# Layout: 1 s silence, sentence, 1.5 s silence, sentence, ..., 1 s silence.
# The gaps let the server cut one utterance per sentence.
# Voice knobs (defaults are the ones the README's key words were tested with):
#   ESPEAK_VOICE=en-us+f5  ESPEAK_SPEED=135 (words/min)  ESPEAK_GAP=0 (10 ms units)
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 OUT.wav SENTENCE [SENTENCE...]" >&2
  exit 2
fi
out=$1; shift
voice=${ESPEAK_VOICE:-en-us+f5}
speed=${ESPEAK_SPEED:-135}
gap=${ESPEAK_GAP:-0}
rate=48000

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
silence() { head -c "$(( rate * 2 * $1 / 1000 ))" /dev/zero; }  # $1 = ms

{
  silence 1000
  n=0
  for sentence in "$@"; do
    [ $n -gt 0 ] && silence 1500
    # espeak-ng writes 22050 Hz mono; ffmpeg converts to raw 48 kHz s16le so
    # the pieces and the silences can simply be concatenated.
    espeak-ng -v "$voice" -s "$speed" -g "$gap" -w "$tmp/s$n.wav" "$sentence"
    ffmpeg -nostdin -loglevel error -i "$tmp/s$n.wav" -ar "$rate" -ac 1 -f s16le -acodec pcm_s16le -
    n=$((n + 1))
  done
  silence 1000
} > "$tmp/all.raw"
ffmpeg -nostdin -loglevel error -y -f s16le -ar "$rate" -ac 1 -i "$tmp/all.raw" -acodec pcm_s16le -bitexact "$out"
