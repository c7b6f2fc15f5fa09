// Live transcription (issue 27) through the official client's captions API: a server started
// with --transcription-engine on the pocketsphinx fixture (tests/transcription/engine.py, an
// OpenAI-compatible engine), two attendees with non-ASCII ExternalUserIds, each in its own
// Chromium process on the demo page: José's fake microphone says two sentences (espeak-ng,
// tests/transcription/speak.sh), Zoë's plays silence. Each page subscribes with
// `meetingSession.audioVideo.transcriptionController.subscribeToTranscriptEvent` before the
// transcription is started with the JS v3 SDK's StartMeetingTranscriptionCommand, exactly as an
// application would with Amazon Chime. Both pages must receive `started`, partial results, then
// finals that hold the sentences' key words, every item attributed to José (attendee id and
// ExternalUserId), a partial and a final under one result id, times inside the call; and after
// StopMeetingTranscriptionCommand, `stopped`. Printed, not judged: the caption latency (end of
// the utterance to the page's callback), where the utterances fell against the looped file, the
// server's mixer and transcription counters, and the engine's request times.
//
// Needs CARILLON_TEST_TRANSCRIPTION_PYTHON: the Python of the fixture's virtualenv (scripts/test
// sets it), espeak-ng and ffmpeg.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  CreateAttendeeCommand,
  CreateMeetingCommand,
  DeleteMeetingCommand,
  StartMeetingTranscriptionCommand,
  StopMeetingTranscriptionCommand,
} from '@aws-sdk/client-chime-sdk-meetings';
import { NO_BACKGROUND_THROTTLING, launchBrowser, openDemo, startServer, until, writeWav } from './harness.mjs';

const credentials = { accessKeyId: 'AKIDTRANSCRIPTIONTEST', secretAccessKey: 'transcription-test-secret' };
const scratch = mkdtempSync(join(tmpdir(), 'carillon-transcription-'));
const fixture = fileURLToPath(new URL('../tests/transcription/', import.meta.url));

/** Sentences the fixture recognises from espeak-ng's voice, and words each must yield. */
const SENTENCES = [
  ['i would like a cup of coffee', ['cup', 'coffee']],
  ["the meeting starts at nine o'clock", ['meeting', 'starts']],
];
const KEY_WORDS = SENTENCES.flatMap(([, words]) => words);
/** Silence before the speech (on top of speak.sh's own second): Chromium loops the file, so
 * this makes the loop long and lets the transcription start before the first word. */
const LEAD_SECONDS = 4;

let engine;
let engineUrl;
const engineLog = [];
let server;
let url;
let adminUrl;
let client;
const browsers = [];

const began = Date.now();
/** Logs `line` after the seconds since the test file began. */
const log = (line) => console.log(`[${((Date.now() - began) / 1000).toFixed(1)} s] ${line}`);

/** Starts the fixture engine on a free port; resolves to its base URL once it listens. */
async function startEngine() {
  const python = process.env.CARILLON_TEST_TRANSCRIPTION_PYTHON;
  if (!python) {
    throw new Error('CARILLON_TEST_TRANSCRIPTION_PYTHON is not set: it must name the Python of the transcription '
      + 'fixture\'s virtualenv (target/compat/transcription/bin/python, which scripts/test creates and sets)');
  }
  engine = spawn(python, [join(fixture, 'engine.py'), '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  // One line per request ("HH:MM:SS POST /v1/audio/transcriptions -> 200 in N ms ..."), never a transcript.
  createInterface({ input: engine.stderr }).on('line', (line) => engineLog.push(line));
  const lines = createInterface({ input: engine.stdout });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the engine did not listen within 60 s: ${engineLog.join('\n')}`)), 60000);
    lines.on('line', (line) => {
      if (!line.startsWith('listening on ')) return;
      clearTimeout(timer);
      resolve(line.slice('listening on '.length).trim());
    });
    engine.on('exit', (code) => reject(new Error(`the engine exited (${code}) before listening: ${engineLog.join('\n')}`)));
  });
}

/** The samples of a 16-bit mono PCM WAV, as numbers in [-1, 1] (for writeWav). */
function readWav(path) {
  const data = readFileSync(path);
  for (let pos = 12; pos + 8 <= data.length;) {
    const id = data.toString('ascii', pos, pos + 4);
    const size = data.readUInt32LE(pos + 4);
    if (id === 'data') {
      const samples = [];
      for (let i = pos + 8; i + 1 < Math.min(data.length, pos + 8 + size); i += 2) samples.push(data.readInt16LE(i) / 32767);
      return samples;
    }
    pos += 8 + size + (size & 1);
  }
  throw new Error(`${path} has no data chunk`);
}

/** The sentences spoken into a 48 kHz WAV, after LEAD_SECONDS of silence. */
function speechWav() {
  const spoken = join(scratch, 'spoken.wav');
  execFileSync(join(fixture, 'speak.sh'), [spoken, ...SENTENCES.map(([sentence]) => sentence)], { stdio: 'inherit' });
  const samples = readWav(spoken);
  const path = join(scratch, 'speech.wav');
  writeWav(path, new Array(LEAD_SECONDS * 48000).fill(0).concat(samples));
  return { path, seconds: LEAD_SECONDS + samples.length / 48000 };
}

before(async () => {
  engineUrl = await startEngine();
  ({ server, url, adminUrl, client } = await startServer({
    name: 'transcription',
    credentials,
    admin: true,
    dataDir: join(scratch, 'data'),
    args: ['--transcription-engine', engineUrl],
  }));
});

after(async () => {
  await Promise.all(browsers.map((b) => b.close().catch(() => {})));
  server?.kill('SIGTERM');
  engine?.kill('SIGTERM');
});

/**
 * Keeps every DefaultMeetingSession the page's amazon-chime-sdk-js creates in
 * `window.carillonSessions`: the demo page keeps its session to itself, and an application has
 * its own. The session's constructor assigns `this.audioVideoFacade` (the object its
 * `audioVideo` getter returns); an accessor on Object.prototype sees that assignment once and
 * leaves a plain property in its place. Call before loading the page.
 */
function keepMeetingSessions(page) {
  return page.evaluateOnNewDocument(() => {
    window.carillonSessions = [];
    Object.defineProperty(Object.prototype, 'audioVideoFacade', {
      configurable: true,
      set(value) {
        Object.defineProperty(this, 'audioVideoFacade', { value, writable: true, configurable: true, enumerable: true });
        if (value) window.carillonSessions.push(this);
      },
    });
    // When the fake microphone opened (its file plays from there), for the report.
    const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    navigator.mediaDevices.getUserMedia = (constraints) => {
      if (constraints?.audio) window.carillonMicrophoneOpened ??= Date.now();
      return getUserMedia(constraints);
    };
  });
}

/** Launches a Chromium of its own for `name` (`wav` as the microphone) on the demo page, with an
 * attendee of `Meeting`. */
async function launch(name, wav, Meeting) {
  const browser = await launchBrowser([`--use-file-for-fake-audio-capture=${wav}`, ...NO_BACKGROUND_THROTTLING]);
  browsers.push(browser);
  const page = await browser.newPage();
  page.on('pageerror', (error) => console.error(`${name} page error:`, error.message));
  await keepMeetingSessions(page);
  await openDemo(page, url);
  const { Attendee } = await client.send(new CreateAttendeeCommand({ MeetingId: Meeting.MeetingId, ExternalUserId: name }));
  return {
    name,
    page,
    id: Attendee.AttendeeId,
    join: () => page.evaluate((m, a) => window.carillon.join({ Meeting: m }, { Attendee: a }), Meeting, Attendee),
    roster: () => page.evaluate(() => window.carillon.roster()),
    events: () => page.evaluate(() => window.captions),
  };
}

/**
 * Subscribes to the page's transcript events with the official API, as an application does:
 * `meetingSession.audioVideo.transcriptionController.subscribeToTranscriptEvent`. Each event
 * lands in `window.captions` with the page's clock when it arrived (`receivedAt`).
 */
function subscribe(person) {
  return person.page.evaluate(() => {
    const sessions = window.carillonSessions;
    if (sessions.length !== 1) throw new Error(`the page made ${sessions.length} meeting sessions, not 1`);
    const [meetingSession] = sessions;
    // The SDK's TranscriptResult times are numbers; protobufjs would give Longs with long.js.
    const ms = (value) => (value !== null && typeof value === 'object' ? Number(value.toString()) : value);
    window.captions = [];
    meetingSession.audioVideo.transcriptionController.subscribeToTranscriptEvent((e) => {
      const receivedAt = Date.now();
      // A TranscriptionStatus has a `type`, a Transcript `results`.
      if (e.results === undefined) {
        window.captions.push({ kind: 'status', type: e.type, message: e.message, receivedAt });
        return;
      }
      window.captions.push({
        kind: 'transcript',
        receivedAt,
        results: e.results.map((r) => ({
          resultId: r.resultId,
          isPartial: r.isPartial,
          startTimeMs: ms(r.startTimeMs),
          endTimeMs: ms(r.endTimeMs),
          timeType: typeof r.startTimeMs,
          transcript: r.alternatives[0]?.transcript,
          items: r.alternatives[0]?.items.map((i) => ({
            content: i.content,
            attendeeId: i.attendee.attendeeId,
            externalUserId: i.attendee.externalUserId,
          })),
        })),
      });
    });
  });
}

/** A page's events split: statuses, and every result with when its event arrived. */
function captions(events) {
  const statuses = events.filter((e) => e.kind === 'status');
  const results = events.filter((e) => e.kind === 'transcript').flatMap((e) => e.results.map((r) => ({ ...r, receivedAt: e.receivedAt })));
  const finals = results.filter((r) => r.isPartial === false);
  const partials = results.filter((r) => r.isPartial === true);
  const finalText = finals.map((r) => r.transcript ?? '').join(' ').toLowerCase();
  return { statuses, results, finals, partials, finalText };
}

/** The server's mixer and transcription counters (Prometheus text on the admin listener). */
async function serverCounters() {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  return text.split('\n').filter((line) => /^carillon_(mixer_(lost|dropped|silence)|transcription_utterances|media_datagrams_dropped)/.test(line));
}

const hasWord = (text, word) => new RegExp(`\\b${word}\\b`).test(text);
const heardAll = (events) => KEY_WORDS.every((word) => hasWord(captions(events ?? []).finalText, word));

test('two browsers\' transcriptionController subscribers get started, attributed partial and final transcripts, then stopped', { timeout: 120000 }, async () => {
  const speech = speechWav();
  const silence = join(scratch, 'silence.wav');
  writeWav(silence, new Array(2 * 48000).fill(0));
  log(`engine at ${engineUrl}; the speaker's microphone loops ${speech.seconds.toFixed(1)} s (${LEAD_SECONDS} s of silence first)`);

  const { Meeting } = await client.send(new CreateMeetingCommand({ MediaRegion: 'us-east-1', ExternalMeetingId: 'transcribed-meeting' }));
  try {
    const jose = await launch('José', speech.path, Meeting);
    const zoe = await launch('Zoë', silence, Meeting);
    const people = [jose, zoe];
    await Promise.all(people.map((p) => p.join()));
    for (const person of people) {
      await until(`${person.name} sees José and Zoë`, person.roster, (r) => JSON.stringify(r) === JSON.stringify(['José', 'Zoë']), 15000);
    }
    log('José and Zoë are in the meeting');

    // Subscribed before the transcription starts, as an application would.
    await Promise.all(people.map(subscribe));
    const startedAt = Date.now();
    await client.send(new StartMeetingTranscriptionCommand({
      MeetingId: Meeting.MeetingId,
      TranscriptionConfiguration: { EngineTranscribeSettings: { LanguageCode: 'en-US' } },
    }));
    log('StartMeetingTranscription answered');

    for (const person of people) {
      await until(`${person.name}'s finals hold ${KEY_WORDS.join(', ')}`, person.events, heardAll,
        Math.max(10000, startedAt + 50000 - Date.now()));
      log(`${person.name}'s finals hold every key word`);
    }

    await client.send(new StopMeetingTranscriptionCommand({ MeetingId: Meeting.MeetingId }));
    log('StopMeetingTranscription answered');
    const stoppedStatus = (events) => events.some((e) => e.kind === 'status' && e.type === 'stopped');
    for (const person of people) await until(`${person.name} is told the transcription stopped`, person.events, stoppedStatus, 15000);
    const stoppedAt = Date.now();
    // What else might still arrive after `stopped` (nothing should).
    await new Promise((resolve) => setTimeout(resolve, 1000));

    const seen = [];
    for (const person of people) {
      const events = await person.events();
      const { statuses, results, finals, partials, finalText } = captions(events);
      seen.push({ person, statuses, results, finals, partials });
      const who = person.name;
      log(`${who}: statuses [${statuses.map((s) => s.type + (s.message ? ` (${s.message})` : '')).join(', ')}], `
        + `${partials.length} partial and ${finals.length} final results (times as ${results[0]?.timeType}s); `
        + `finals: ${JSON.stringify(finals.map((r) => r.transcript))}`);

      assert.equal(statuses[0]?.type, 'started', `${who}'s first status is started: ${JSON.stringify(statuses)}`);
      assert.equal(statuses.at(-1)?.type, 'stopped', `${who}'s last status is stopped: ${JSON.stringify(statuses)}`);
      assert.equal(events.at(-1).kind, 'status', `${who} gets no transcript after stopped: ${JSON.stringify(events.slice(-3))}`);
      assert.ok(partials.length > 0, `${who} got at least one partial result: ${JSON.stringify(results)}`);
      for (const word of KEY_WORDS) assert.ok(hasWord(finalText, word), `${who}'s finals hold "${word}": ${finalText}`);

      for (const r of finals) {
        assert.ok(r.items?.length > 0, `${who}'s final ${r.resultId} has items: ${JSON.stringify(r)}`);
        for (const item of r.items) {
          assert.deepEqual({ attendeeId: item.attendeeId, externalUserId: item.externalUserId }, { attendeeId: jose.id, externalUserId: 'José' },
            `${who}'s final ${r.resultId} item "${item.content}" is attributed to José`);
        }
        assert.ok(Number.isFinite(r.startTimeMs) && Number.isFinite(r.endTimeMs),
          `${who}'s final ${r.resultId} has a startTimeMs and an endTimeMs: ${JSON.stringify(r)}`);
        assert.ok(r.startTimeMs <= r.endTimeMs, `${who}'s final ${r.resultId} starts (${r.startTimeMs}) no later than it ends (${r.endTimeMs})`);
        for (const at of [r.startTimeMs, r.endTimeMs]) {
          assert.ok(at >= startedAt - 5000 && at <= stoppedAt + 5000,
            `${who}'s final ${r.resultId} time ${at} is within the call (${startedAt}..${stoppedAt}, ±5 s)`);
        }
      }
      const partialIds = new Set(partials.map((r) => r.resultId));
      assert.ok(finals.some((r) => partialIds.has(r.resultId)),
        `${who} has a partial and a final under one result id: partials ${[...partialIds]}, finals ${finals.map((r) => r.resultId)}`);
    }

    // Both pages were sent the same finals.
    const [joseFinals, zoeFinals] = seen.map(({ finals }) => finals.map((r) => `${r.resultId} ${r.transcript}`));
    assert.deepEqual(zoeFinals, joseFinals, 'José and Zoë receive the same final results');

    // Caption latency: from the end of the utterance (the result's endTimeMs, the server's wall
    // clock, the same machine's) to the page's callback.
    for (const { person, finals } of seen) {
      const latencies = finals.map((r) => r.receivedAt - r.endTimeMs);
      const sorted = [...latencies].sort((a, b) => a - b);
      log(`${person.name} caption latency ms: [${latencies.join(', ')}] (median ${sorted[Math.floor(sorted.length / 2)]}, `
        + `max ${sorted.at(-1)}; finals ${JSON.stringify(finals.map((r) => `${r.endTimeMs - r.startTimeMs} ms long`))})`);
    }
    // Where the utterances fell, against where the looped file speaks (speak.sh's first second
    // is silence too): to tell a sentence cut in two from one heard whole.
    const opened = await jose.page.evaluate(() => window.carillonMicrophoneOpened);
    const onsets = [];
    for (let at = opened + (LEAD_SECONDS + 1) * 1000; at < stoppedAt; at += speech.seconds * 1000) onsets.push(Math.round(at - startedAt));
    log(`José's microphone opened ${opened - startedAt} ms from the Start; the first sentence begins at [${onsets.join(', ')}] ms; `
      + `finals at (ms from the Start): ${seen[0].finals.map((r) => `[${r.startTimeMs - startedAt}..${r.endTimeMs - startedAt}] "${r.transcript}"`).join(', ')}`);
    log(`server counters: ${(await serverCounters()).join('; ')}`);
    const requests = engineLog.filter((line) => line.includes('POST /v1/audio/transcriptions'));
    const engineMs = requests.map((line) => Number(line.match(/ in (\d+)ms/)?.[1])).filter(Number.isFinite).sort((a, b) => a - b);
    log(`engine: ${requests.length} transcription requests (${requests.filter((l) => !l.includes('-> 200')).length} not 200), `
      + `each answered in median ${engineMs[Math.floor(engineMs.length / 2)]} ms, max ${engineMs.at(-1)} ms`);
  } finally {
    await client.send(new DeleteMeetingCommand({ MeetingId: Meeting.MeetingId })).catch(() => {});
  }
});
