// Group audio through the official client: three attendees, each in its own Chromium process
// with its own tone as the fake microphone (--use-file-for-fake-audio-capture), join one meeting.
// Each page analyses what its remote <audio> element plays (WebAudio, FFT) and must hear both
// other tones at the same time and not its own: Carillon mixes on the server, as Chime does,
// and subtracts each listener's own voice. Forwarding only the loudest speaker fails this test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CreateAttendeeCommand,
  CreateMeetingCommand,
} from '@aws-sdk/client-chime-sdk-meetings';
import { launchBrowser, openPage, sleep, startServer, waitFor, writeWav } from './harness.mjs';

const credentials = { accessKeyId: 'AKIDMIXTEST', secretAccessKey: 'mix-test-secret' };
const scratch = mkdtempSync(join(tmpdir(), 'carillon-mix-'));

// Far enough apart for an 8192-point FFT at 48 kHz (5.9 Hz bins), inside Opus's speech band.
const people = [
  { name: 'alice', tone: 440 },
  { name: 'bob', tone: 700 },
  { name: 'carol', tone: 1100 },
];

let server;
let url;
let client;
const browsers = [];

/** A mono 48 kHz WAV of a sine tone; Chromium loops it as the fake microphone. */
function toneWav(path, frequency, seconds = 6) {
  const rate = 48000;
  const samples = Array.from({ length: rate * seconds }, (_, i) => Math.sin((2 * Math.PI * frequency * i) / rate) * (12000 / 32767));
  writeWav(path, samples, rate);
}

before(async () => {
  ({ server, url, client } = await startServer({ credentials, dataDir: join(scratch, 'data') }));
});

after(async () => {
  await Promise.all(browsers.map((b) => b.close()));
  server?.kill('SIGTERM');
});

async function launchWithTone(person) {
  const wav = join(scratch, `${person.name}.wav`);
  toneWav(wav, person.tone);
  const browser = await launchBrowser([
    `--use-file-for-fake-audio-capture=${wav}`,
    '--disable-background-timer-throttling',
    '--disable-renderer-backgrounding',
  ]);
  browsers.push(browser);
  return openPage(browser, url, person.name);
}

/**
 * Listens to the page's remote audio for `ms` and returns, for each frequency, how far its
 * spectral peak stands above the spectrum's median (dB), averaged over the window.
 */
function listen(page, frequencies, ms) {
  return page.evaluate(async (freqs, duration) => {
    const element = document.getElementById('meeting-audio');
    const context = new AudioContext({ sampleRate: 48000 });
    await context.resume();
    const analyser = context.createAnalyser();
    analyser.fftSize = 8192;
    analyser.smoothingTimeConstant = 0;
    context.createMediaStreamSource(element.srcObject).connect(analyser);
    const frame = new Float32Array(analyser.frequencyBinCount);
    const power = new Float64Array(analyser.frequencyBinCount);
    let frames = 0;
    const end = performance.now() + duration;
    while (performance.now() < end) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      analyser.getFloatFrequencyData(frame);
      frame.forEach((db, i) => { power[i] += 10 ** (db / 10); });
      frames += 1;
    }
    await context.close();
    const db = Array.from(power, (p) => 10 * Math.log10(p / frames + 1e-20));
    const floor = [...db].sort((a, b) => a - b)[Math.floor(db.length / 2)];
    const binHz = 48000 / analyser.fftSize;
    return freqs.map((f) => {
      const bin = Math.round(f / binHz);
      return Math.max(...db.slice(bin - 2, bin + 3)) - floor;
    });
  }, frequencies, ms);
}

test('three browsers talking at once each hear both others and not themselves', async () => {
  const { Meeting } = await client.send(new CreateMeetingCommand({ MediaRegion: 'us-east-1', ExternalMeetingId: 'three-way-mix' }));
  const pages = [];
  for (const person of people) {
    const { Attendee } = await client.send(new CreateAttendeeCommand({ MeetingId: Meeting.MeetingId, ExternalUserId: person.name }));
    pages.push({ ...person, page: await launchWithTone(person), attendee: Attendee });
  }
  await Promise.all(pages.map(({ page, attendee }) => page.evaluate(
    (m, a) => window.carillon.join({ Meeting: m }, { Attendee: a }),
    Meeting,
    attendee,
  )));
  for (const { page } of pages) {
    await waitFor(page, () => window.carillon.roster().length === 3
      && document.getElementById('meeting-audio').srcObject !== null);
  }
  // Let every jitter buffer and the mixer settle, then listen on all three at once.
  await sleep(1500);
  const tones = people.map((p) => p.tone);
  const heard = await Promise.all(pages.map(({ page }) => listen(page, tones, 3000)));
  pages.forEach(({ name, tone }, i) => {
    const report = tones.map((f, j) => `${f} Hz ${heard[i][j].toFixed(1)} dB`).join(', ');
    console.log(`${name} (own tone ${tone} Hz) hears: ${report}`);
    const others = tones.map((f, j) => (f === tone ? Infinity : heard[i][j]));
    const quietestOther = Math.min(...others);
    const own = heard[i][tones.indexOf(tone)];
    // Both others stand far out of the spectrum; the own tone is at most codec noise, well
    // below the quieter of the two others.
    assert.ok(quietestOther > 40, `${name} hears both other tones: ${report}`);
    assert.ok(own < quietestOther - 30, `${name} does not hear her own tone: ${report}`);
  });
});
