// Recording (issue 26) through the official clients: three attendees, each in its own Chromium
// process with its own tone as the fake microphone and its own solid-colour canvas as the camera,
// one of them also sharing a blue canvas, are recorded by a media capture pipeline created with
// the JS v3 SDK's media pipelines client (@aws-sdk/client-chime-sdk-media-pipelines), for 30 s,
// into the embedded sink (buckets as folders under the data directory); a media concatenation
// pipeline then joins the chunks. What lands in the bucket is judged with ffmpeg and ffprobe:
// - the concatenated audio holds all three tones (FFT) and lasts as long as the capture ran;
// - each camera's concatenated video decodes to frames of its colour, the content share's to blue;
// - the concatenated audio and every concatenated video play in Chromium's <audio> and <video>;
// - every audio and video chunk of the capture plays (no decoder error, no two frames at one
//   time) and lasts its wall-clock length within 1 %: 5 s for audio, for video the time from its
//   name's timestamp to the next chunk's of the same stream;
// - data-channel/ holds every data message sent, text exact, with its sender; meeting-events/ the
//   capture's start and end, the late joiner's join and camera, and the leaver's leave.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import {
  CreateAttendeeCommand,
  CreateMeetingCommand,
  DeleteMeetingCommand,
} from '@aws-sdk/client-chime-sdk-meetings';
import {
  CreateMediaCapturePipelineCommand,
  CreateMediaConcatenationPipelineCommand,
  DeleteMediaCapturePipelineCommand,
  GetMediaPipelineCommand,
} from '@aws-sdk/client-chime-sdk-media-pipelines';
import {
  NO_BACKGROUND_THROTTLING, launchBrowser, looksLike, mediaPipelinesClient, openPage, remoteTile, showsColour, sleep,
  startServer, toneWav, until,
} from './harness.mjs';

const credentials = { accessKeyId: 'AKIDRECORDINGTEST', secretAccessKey: 'recording-test-secret' };
const scratch = mkdtempSync(join(tmpdir(), 'carillon-recording-'));
const dataDir = join(scratch, 'data');
const BUCKET = 'carillon-recordings';
// The page Chromium plays the recorded files from (file:// beside them).
writeFileSync(join(scratch, 'blank.html'), '<!doctype html><title>player</title><body></body>');
/** How long the capture runs, from its Create to its Delete. */
const CAPTURE_MS = 30000;

const RED = [255, 0, 0];
const GREEN = [0, 255, 0];
const YELLOW = [255, 255, 0];
const BLUE = [0, 0, 255];

// Far enough apart for an 8192-point FFT at 48 kHz (5.9 Hz bins), inside Opus's speech band.
// Zoë joins after the capture has started (so meeting-events/ has a join and a camera start);
// José leaves before it stops (so it has a leave); «Ana» also shares the demo page's blue canvas.
const PEOPLE = [
  { name: 'José', tone: 440, colour: RED },
  { name: 'Zoë', tone: 700, colour: GREEN, late: true },
  { name: '«Ana»', tone: 1100, colour: YELLOW, shares: true },
];
// Data messages (topic "chat"), by sender: non-ASCII text, and JSON's own special characters.
const MESSAGES = {
  'José': ['Olá! Sou o José — ação, coração 👋'],
  'Zoë': ['Zoë: ça va? Grüße aus Köln ✓', 'naïve "quoted" text, a back\\slash, “curly” quotes'],
  '«Ana»': ['«Ana» diz: 日本語のテキスト, Ελληνικά 🎉'],
};

let server;
let url;
let adminUrl;
let client;
let pipelines;
const browsers = [];

before(async () => {
  ({ server, url, adminUrl, client } = await startServer({ credentials, dataDir, admin: true }));
  pipelines = await mediaPipelinesClient(url, credentials);
});

after(async () => {
  await Promise.all(browsers.map((b) => b.close().catch(() => {})));
  server?.kill('SIGTERM');
});

const run = promisify(execFile);

const began = Date.now();
/** Logs `line` after the seconds since the test file began. */
const log = (line) => console.log(`[${((Date.now() - began) / 1000).toFixed(1)} s] ${line}`);

/** Runs ffmpeg or ffprobe; resolves to {stdout (a Buffer), stderr (text)}. */
async function media(tool, args) {
  const { stdout, stderr } = await run(tool, args, { encoding: 'buffer', maxBuffer: 1 << 30 });
  return { stdout, stderr: stderr.toString() };
}

/** ffprobe's format duration of `file` (s), and the presentation times (ms) of its video
 * packets in file order (none for audio). */
async function probe(file) {
  const { stdout } = await media('ffprobe', ['-v', 'error', '-select_streams', 'v:0',
    '-show_entries', 'format=duration:packet=pts_time', '-of', 'json', file]);
  const { format, packets = [] } = JSON.parse(stdout.toString());
  return { duration: Number(format.duration), times: packets.map((p) => Math.round(Number(p.pts_time) * 1000)) };
}

/**
 * What ffmpeg reports (at level error) while decoding all of `file`: '' when it plays cleanly.
 * The frames keep their own timestamps (`-enc_time_base -1`): by default ffmpeg 5 re-times
 * variable-rate video onto a guessed constant rate, and two camera frames closer together than
 * that rate's period then "collide", an error of ffmpeg's own making. Frames that really share
 * a timestamp are still reported.
 */
async function decodeErrors(file) {
  const { stderr } = await media('ffmpeg', ['-v', 'error', '-i', file, '-enc_time_base', '-1', '-f', 'null', '-']);
  return stderr.trim();
}

/** Where frames do not move forward in time: "N frames at T ms" for each such run. */
function repeatedTimes(times) {
  const runs = [];
  for (let i = 1; i < times.length; i += 1) {
    if (times[i] > times[i - 1]) continue;
    const last = runs.at(-1);
    if (last && last.end === i - 1) {
      last.end = i;
      last.count += 1;
    } else {
      runs.push({ at: times[i - 1], end: i, count: 2 });
    }
  }
  return runs.map((run) => `${run.count} frames at ${run.at} ms`);
}

/** `file`'s audio decoded to mono 48 kHz float samples. */
async function decodeAudio(file) {
  const { stdout } = await media('ffmpeg', ['-v', 'error', '-i', file, '-f', 'f32le', '-ac', '1', '-ar', '48000', '-']);
  return new Float32Array(stdout.buffer.slice(stdout.byteOffset, stdout.byteOffset + stdout.length));
}

/** The average [r, g, b] of 5 frames of `file` decoded from `at` seconds on, scaled to 16×16. */
async function averageColour(file, at) {
  const { stdout } = await media('ffmpeg', ['-v', 'error', '-i', file, '-ss', String(at), '-vf', 'scale=16:16',
    '-frames:v', '5', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-']);
  assert.ok(stdout.length >= 16 * 16 * 3, `${file} decodes to frames from ${at} s on (got ${stdout.length} bytes)`);
  const sum = [0, 0, 0];
  for (let i = 0; i < stdout.length; i += 1) sum[i % 3] += stdout[i];
  return sum.map((s) => Math.round(s / (stdout.length / 3)));
}

/** In-place iterative radix-2 FFT of (re, im), whose length is a power of two. */
function fft(re, im) {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i += 1) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j], re[i]];
      [im[i], im[j]] = [im[j], im[i]];
    }
  }
  for (let size = 2; size <= n; size <<= 1) {
    const step = (-2 * Math.PI) / size;
    for (let start = 0; start < n; start += size) {
      for (let k = 0; k < size / 2; k += 1) {
        const [c, s] = [Math.cos(step * k), Math.sin(step * k)];
        const [a, b] = [start + k, start + k + size / 2];
        const tr = re[b] * c - im[b] * s;
        const ti = re[b] * s + im[b] * c;
        re[b] = re[a] - tr;
        im[b] = im[a] - ti;
        re[a] += tr;
        im[a] += ti;
      }
    }
  }
}

/**
 * How far each of `frequencies` stands out of `samples` (48 kHz): the power of its peak (within
 * ±2 bins) over the median power of the bins 40 to 150 Hz either side of it, averaged over
 * Hann-windowed 8192-point frames.
 */
function toneRatios(samples, frequencies) {
  const size = 8192;
  const binHz = 48000 / size;
  const power = new Float64Array(size / 2);
  let frames = 0;
  for (let start = 0; start + size <= samples.length; start += size) {
    const re = new Float64Array(size);
    const im = new Float64Array(size);
    for (let i = 0; i < size; i += 1) re[i] = samples[start + i] * (0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (size - 1)));
    fft(re, im);
    for (let k = 0; k < size / 2; k += 1) power[k] += re[k] * re[k] + im[k] * im[k];
    frames += 1;
  }
  assert.ok(frames > 0, 'the window holds at least one FFT frame');
  return frequencies.map((f) => {
    const bin = Math.round(f / binHz);
    const peak = Math.max(...power.slice(bin - 2, bin + 3));
    const near = [];
    for (let k = Math.round((f - 150) / binHz); k <= Math.round((f + 150) / binHz); k += 1) {
      if (Math.abs(k - bin) * binHz >= 40) near.push(power[k]);
    }
    near.sort((a, b) => a - b);
    return peak / (near[Math.floor(near.length / 2)] + 1e-30);
  });
}

/** `yyyy-mm-dd-HH-MM-SS-mmm` (UTC) as ms since the epoch. */
function stampMs(stamp) {
  const [y, mo, d, h, mi, s, ms] = stamp.split('-').map(Number);
  return Date.UTC(y, mo - 1, d, h, mi, s, ms);
}

const STAMP = '\\d{4}-\\d{2}-\\d{2}-\\d{2}-\\d{2}-\\d{2}-\\d{3}';

/** The files of a folder (sorted), [] when it does not exist. */
const files = (folder) => (existsSync(folder) ? readdirSync(folder).sort() : []);

/** A `.txt` artifact's JSON lines. */
const jsonLines = (file) => readFileSync(file, 'utf8').split('\n').filter((line) => line !== '').map((line) => JSON.parse(line));

/** The server's mixer counters (Prometheus text on the admin listener): ticks, and µs busy. */
async function mixerCounters() {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const value = (name) => Number(text.match(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm'))?.[1] ?? NaN);
  return { ticks: value('carillon_mixer_ticks_total'), busyUs: value('carillon_mixer_busy_microseconds_total') };
}

/** The share of 100 ms stretches of `samples` (48 kHz) that are digital silence. */
function silentShare(samples) {
  let silent = 0;
  let windows = 0;
  for (let start = 0; start + 4800 <= samples.length; start += 4800) {
    let energy = 0;
    for (let i = start; i < start + 4800; i += 1) energy += samples[i] * samples[i];
    if (Math.sqrt(energy / 4800) < 1e-4) silent += 1;
    windows += 1;
  }
  return silent / Math.max(1, windows);
}

/** Launches a Chromium of its own for `person` (its tone as the microphone) on the demo page. */
async function launch(person, Meeting) {
  const wav = join(scratch, `${person.tone}.wav`);
  toneWav(wav, person.tone);
  const browser = await launchBrowser([`--use-file-for-fake-audio-capture=${wav}`, ...NO_BACKGROUND_THROTTLING]);
  browsers.push(browser);
  const page = await openPage(browser, url, person.name);
  const { Attendee } = await client.send(new CreateAttendeeCommand({ MeetingId: Meeting.MeetingId, ExternalUserId: person.name }));
  return {
    ...person,
    page,
    attendee: Attendee,
    id: Attendee.AttendeeId,
    call: (hook, ...args) => page.evaluate((h, a) => window.carillon[h](...a), hook, args),
    join: () => page.evaluate((m, a) => window.carillon.join({ Meeting: m }, { Attendee: a }), Meeting, Attendee),
  };
}

/** Waits until each of `present` has exactly them, and the attendees named in `others`, in its
 * roster. */
async function seeEachOther(present, others = []) {
  const everyone = JSON.stringify([...present.map(({ name }) => name), ...others].sort());
  for (const person of present) {
    await until(`${person.name} sees ${everyone}`, () => person.call('roster'), (r) => JSON.stringify(r) === everyone, 15000);
  }
}

/** Waits until `viewer` shows `publisher`'s camera in its colour (and «Ana»'s share in blue). */
async function showsCamera(viewer, publisher) {
  await remoteTile(viewer, publisher.id, 15000);
  await showsColour(viewer, publisher.id, publisher.colour, 10000);
  if (publisher.shares) {
    await remoteTile(viewer, `${publisher.id}#content`, 15000);
    await showsColour(viewer, `${publisher.id}#content`, BLUE, 10000);
  }
}

test('a 30 s capture of three browsers, concatenated, holds their tones, colours, data messages and events', { timeout: 170000 }, async () => {
  const { Meeting } = await client.send(new CreateMeetingCommand({ MediaRegion: 'us-east-1', ExternalMeetingId: 'recorded-meeting' }));
  try {
    const people = [];
    for (const person of PEOPLE) people.push(await launch(person, Meeting));
    const [jose, zoe, ana] = people;
    const early = people.filter((p) => !p.late);

    // José and «Ana» are in the meeting with their cameras (and «Ana»'s share) before it is recorded.
    await Promise.all(early.map((p) => p.join()));
    await seeEachOther(early);
    await Promise.all(early.map((p) => p.call('colourCamera', ...p.colour)));
    await ana.call('startContentShare');
    await showsCamera(jose, ana);
    await showsCamera(ana, jose);
    log('José and «Ana» show each other\'s cameras and «Ana»\'s share');

    // The capture: the meeting's ARN as the source, a bucket (no prefix: the pipeline id is the
    // folder) as the sink, no ChimeSdkMeetingConfiguration (everything recorded).
    const { MediaCapturePipeline: capture } = await pipelines.send(new CreateMediaCapturePipelineCommand({
      SourceType: 'ChimeSdkMeeting',
      SourceArn: Meeting.MeetingArn,
      SinkType: 'S3Bucket',
      SinkArn: `arn:aws:s3:::${BUCKET}`,
    }));
    const captureStarted = Date.now();
    const mixerBefore = await mixerCounters();
    // As AWS's guide does it: the concatenation is created while the capture runs, and starts
    // once the capture has stopped.
    const enabled = { State: 'Enabled' };
    const disabled = { State: 'Disabled' };
    const { MediaConcatenationPipeline: concatenation } = await pipelines.send(new CreateMediaConcatenationPipelineCommand({
      Sources: [{
        Type: 'MediaCapturePipeline',
        MediaCapturePipelineSourceConfiguration: {
          MediaPipelineArn: capture.MediaPipelineArn,
          ChimeSdkMeetingConfiguration: {
            ArtifactsConfiguration: {
              Audio: enabled,
              Video: enabled,
              Content: enabled,
              DataChannel: enabled,
              MeetingEvents: enabled,
              TranscriptionMessages: disabled,
              CompositedVideo: disabled,
            },
          },
        },
      }],
      Sinks: [{ Type: 'S3Bucket', S3BucketSinkConfiguration: { Destination: `arn:aws:s3:::${BUCKET}/concatenated` } }],
    }));
    log(`capture ${capture.MediaPipelineId} started, concatenation ${concatenation.MediaPipelineId} waits for it`);

    // Zoë joins the recorded meeting and turns her camera on.
    await zoe.join();
    // A capture pipeline is in the meeting as an attendee of its own, as with AWS.
    await seeEachOther(people, [`aws:MediaPipeline-${capture.MediaPipelineId}`]);
    await zoe.call('colourCamera', ...zoe.colour);
    await showsCamera(zoe, jose);
    await showsCamera(zoe, ana);
    await showsCamera(jose, zoe);
    log('Zoë has joined; everyone shows everyone');

    // Everyone says something; each message reaches the others (so the server relayed it).
    for (const sender of people) {
      for (const text of MESSAGES[sender.name]) {
        await sender.call('sendChat', text);
        for (const receiver of people.filter((p) => p !== sender)) {
          await until(`${receiver.name} receives "${text}"`, () => receiver.call('chats'), (chats) => chats.some((c) => c.text === text && c.from === sender.name), 5000);
        }
      }
    }
    const waiting = await pipelines.send(new GetMediaPipelineCommand({ MediaPipelineId: concatenation.MediaPipelineId }));
    assert.notEqual(waiting.MediaPipeline.MediaConcatenationPipeline.Status, 'Stopped', 'the concatenation waits for the capture');

    // José leaves a few seconds before the end, then the capture is deleted (which flushes it).
    await sleep(Math.max(0, captureStarted + CAPTURE_MS - 4000 - Date.now()));
    await jose.call('leave');
    await until('José is gone for the others', () => Promise.all([zoe, ana].map((p) => p.call('roster'))),
      (rosters) => rosters.every((r) => !r.includes('José')), 10000);
    await sleep(Math.max(0, captureStarted + CAPTURE_MS - Date.now()));
    const captureStopped = Date.now();
    const mixerAfter = await mixerCounters();
    await pipelines.send(new DeleteMediaCapturePipelineCommand({ MediaPipelineId: capture.MediaPipelineId }));
    const captureMs = captureStopped - captureStarted;
    // The rest is ffmpeg's work: the browsers would only compete with it for the CPU.
    await Promise.all(browsers.splice(0).map((b) => b.close().catch(() => {})));

    const joined = await until('the concatenation stops', async () => (await pipelines.send(new GetMediaPipelineCommand({
      MediaPipelineId: concatenation.MediaPipelineId,
    }))).MediaPipeline.MediaConcatenationPipeline.Status, (status) => status === 'Stopped' || status === 'Failed', 60000);
    assert.equal(joined, 'Stopped', 'the concatenation pipeline finishes without failing');

    const captured = join(dataDir, 'buckets', BUCKET, capture.MediaPipelineId);
    const concatenated = join(dataDir, 'buckets', BUCKET, 'concatenated');
    const concatId = concatenation.MediaPipelineId;
    const folders = ['audio', 'video', 'meeting-events', 'data-channel'];
    const ticks = mixerAfter.ticks - mixerBefore.ticks;
    // The server runs a mixer thread per core, each ticking every 20 ms; a mixer starved of CPU
    // skips ticks, which the recording fills with silence.
    const due = Math.round(captureMs / 20) * availableParallelism();
    log(`capture ran ${(captureMs / 1000).toFixed(3)} s (the mixers ticked ${ticks} times of ${due} due, `
      + `busy ${((mixerAfter.busyUs - mixerBefore.busyUs) / 1000).toFixed(0)} ms) into ${captured}: `
      + `${folders.map((f) => `${f}/ ${files(join(captured, f)).length} chunks`).join(', ')}`);
    log(`concatenated into ${concatenated}: ${folders.map((f) => `${f}/ [${files(join(concatenated, f)).join(', ')}]`).join('; ')}`);

    // Everything below is checked, and what is wrong collected, before the test fails: a CI log
    // then shows all of it at once.
    const problems = [];
    const check = (ok, problem) => {
      if (!ok) problems.push(problem);
    };
    /** `file` plays: ffmpeg decodes all of it without an error, no two frames at one time. */
    const plays = async (file, what) => {
      const errors = await decodeErrors(file);
      const lines = errors.split('\n');
      check(errors === '', `${what} does not decode cleanly: ${lines.slice(0, 3).join(' | ')}${lines.length > 3 ? ` (${lines.length} lines)` : ''}`);
      const probed = await probe(file);
      const stalls = repeatedTimes(probed.times);
      check(stalls.length === 0, `${what} has frames sharing a timestamp: ${stalls.join(', ')}`);
      return probed.duration;
    };

    // The concatenated audio: as long as the capture ran, and all three tones in its middle,
    // where everyone was talking (Zoë had joined, José not yet left).
    const audioFile = join(concatenated, 'audio', `${concatId}.mp4`);
    assert.ok(existsSync(audioFile), `${audioFile} exists`);
    const audioSeconds = await plays(audioFile, 'the concatenated audio');
    const samples = await decodeAudio(audioFile);
    check(Math.abs(audioSeconds * 1000 - captureMs) < 1000, `the concatenated audio lasts ${audioSeconds} s (ffprobe), the capture ran ${captureMs / 1000} s`);
    check(Math.abs(samples.length / 48 - captureMs) < 1000, `the concatenated audio decodes to ${samples.length / 48000} s, the capture ran ${captureMs / 1000} s`);
    const tones = people.map((p) => p.tone);
    const ratios = toneRatios(samples.subarray(12 * 48000, 24 * 48000), tones);
    const toneReport = tones.map((f, i) => `${f} Hz ${(10 * Math.log10(ratios[i])).toFixed(1)} dB`).join(', ');
    log(`concatenated audio: ${audioSeconds.toFixed(3)} s (${(samples.length / 48000).toFixed(3)} s decoded), `
      + `${(100 * silentShare(samples)).toFixed(0)} % of it digital silence; each tone over its neighbourhood at 12-24 s: ${toneReport}`);
    ratios.forEach((ratio, i) => check(ratio >= 10, `the ${tones[i]} Hz tone of ${people[i].name} does not stand out of the recording at 12-24 s (≥ 10 dB): ${toneReport}`));

    // Each camera's concatenated video, and the share's: one file each, in their colours.
    const videos = people.map((p) => ({ name: p.name, file: `${concatId}-${p.id}.webm`, colour: p.colour }))
      .concat([{ name: '«Ana»#content', file: `${concatId}-${ana.id}#content.webm`, colour: BLUE }]);
    assert.deepEqual(files(join(concatenated, 'video')), videos.map((v) => v.file).sort(), 'one concatenated video per camera and content share');
    for (const video of videos) {
      const file = join(concatenated, 'video', video.file);
      const seconds = await plays(file, `the concatenated video ${video.file} (${video.name})`);
      const rgb = await averageColour(file, seconds / 2);
      log(`concatenated video of ${video.name}: ${seconds.toFixed(3)} s, rgb(${rgb}) in its middle (painted rgb(${video.colour}))`);
      check(looksLike(video.colour)(rgb), `${video.name}'s video (${video.file}) shows rgb(${rgb}), not rgb(${video.colour})`);
    }

    // data-channel/: every message, its text exact, with its sender.
    const dataFile = join(concatenated, 'data-channel', `${concatId}.txt`);
    const data = jsonLines(dataFile);
    for (const sender of people) {
      for (const text of MESSAGES[sender.name]) {
        check(data.some((line) => line.Topic === 'chat' && line.Data === text && line.SenderAttendeeId === sender.id && line.SenderExternalUserId === sender.name),
          `${dataFile} lacks ${sender.name}'s "${text}": ${JSON.stringify(data)}`);
      }
    }
    const sent = Object.values(MESSAGES).flat().length;
    check(data.length === sent, `${dataFile} holds ${data.length} lines, not the ${sent} data messages sent`);

    // meeting-events/: the capture's start first and end last; Zoë's join and camera; José's
    // camera going and his leave.
    const eventsFile = join(concatenated, 'meeting-events', `${concatId}.txt`);
    const events = jsonLines(eventsFile);
    const eventTypes = events.map((e) => e.EventType);
    const named = (e) => [e.EventType, people.find((p) => p.id === e.EventParameters.AttendeeId)?.name].filter(Boolean).join(' ');
    log(`meeting events: ${events.map(named).join(', ')}; data messages: ${data.length} of ${sent}`);
    const has = (type, person, name) => events.some((e) => e.EventType === type && e.EventParameters.MeetingId === Meeting.MeetingId
      && (!person || e.EventParameters.AttendeeId === person.id) && (!name || e.EventParameters.ExternalUserId === name));
    check(eventTypes[0] === 'CaptureStarted', `${eventsFile} does not begin with CaptureStarted: ${eventTypes}`);
    check(eventTypes.at(-1) === 'CaptureEnded', `${eventsFile} does not end with CaptureEnded: ${eventTypes}`);
    check(has('CaptureStarted') && has('CaptureEnded'), `the capture events do not name the meeting: ${JSON.stringify(events)}`);
    check(has('AttendeeJoined', zoe, 'Zoë'), `${eventsFile} lacks Zoë's AttendeeJoined: ${JSON.stringify(events)}`);
    check(has('AttendeeVideoJoined', zoe), `${eventsFile} lacks Zoë's AttendeeVideoJoined: ${JSON.stringify(events)}`);
    check(has('AttendeeVideoLeft', jose), `${eventsFile} lacks José's AttendeeVideoLeft: ${JSON.stringify(events)}`);
    check(has('AttendeeLeft', jose, 'José'), `${eventsFile} lacks José's AttendeeLeft: ${JSON.stringify(events)}`);
    const stamps = events.map((e) => Date.parse(e.Timestamp));
    check(stamps.every((t, i) => i === 0 || t >= stamps[i - 1]), `${eventsFile} is not in time order: ${events.map((e) => e.Timestamp)}`);

    // And they play in Chromium: the concatenated audio in <audio>, each video in <video> (VP8
    // in WebM, chosen because Chromium does not play VP8 in MP4): metadata, the picture's size,
    // and playback that moves on.
    const player = await launchBrowser(['--allow-file-access-from-files']);
    try {
      const page = await player.newPage();
      await page.goto(pathToFileURL(join(scratch, 'blank.html')).href);
      const media = [{ kind: 'audio', file: audioFile }]
        .concat(videos.map((v) => ({ kind: 'video', file: join(concatenated, 'video', v.file) })));
      for (const { kind, file } of media) {
        const played = await page.evaluate(async (kind, src) => {
          const element = document.createElement(kind);
          element.muted = true;
          element.src = src;
          document.body.append(element);
          const ready = await new Promise((resolve) => {
            element.onloadedmetadata = () => resolve(true);
            element.onerror = () => resolve(false);
            setTimeout(() => resolve(false), 10000);
          });
          if (!ready) return { error: element.error ? `${element.error.code} ${element.error.message}` : 'no metadata in 10 s' };
          await element.play().catch(() => {});
          const started = performance.now();
          while (element.currentTime < 1 && performance.now() - started < 5000 && !element.error) {
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
          const result = { duration: element.duration, currentTime: element.currentTime, width: element.videoWidth ?? 0, error: element.error?.message };
          element.remove();
          return result;
        }, kind, pathToFileURL(file).href);
        log(`Chromium plays ${file.split('/').pop()}: ${JSON.stringify(played)}`);
        check(!played.error && played.currentTime >= 1 && played.duration > 1 && (kind === 'audio' || played.width > 0),
          `Chromium's <${kind}> does not play ${file}: ${JSON.stringify(played)}`);
      }
    } finally {
      await player.close().catch(() => {});
    }

    // Every chunk of the capture plays, and lasts its wall-clock length within 1 %: 5 s for
    // audio; for video the time from its name's timestamp to the next chunk's of the same stream,
    // unless the chunk was cut at 5 s while its stream's next keyframe was late (then the next
    // chunk starts later, on that keyframe: the chunk lasts 5 s and never overlaps the next).
    // The last chunk of each series is cut short by the capture's end (or the camera's), by
    // design: it must play, but its length is not checked.
    const audioChunks = files(join(captured, 'audio'));
    check(audioChunks.every((name) => new RegExp(`^${STAMP}\\.mp4$`).test(name)), `audio chunks are not all named by their time: ${audioChunks}`);
    check(audioChunks.length >= 6, `a 30 s capture made ${audioChunks.length} audio chunks, not at least 6 of 5 s: ${audioChunks}`);
    const audioLengths = [];
    for (const [i, name] of audioChunks.entries()) {
      const seconds = await plays(join(captured, 'audio', name), `audio chunk ${name}`);
      audioLengths.push(seconds.toFixed(3));
      if (i < audioChunks.length - 1) check(Math.abs(seconds - 5) <= 0.05, `audio chunk ${name} lasts ${seconds} s, not 5 s`);
    }
    log(`audio chunks: ${audioChunks.length}, lasting [${audioLengths.join(' ')}] s (the last cut by the capture's end)`);
    const streams = new Map();
    for (const name of files(join(captured, 'video'))) {
      const match = name.match(new RegExp(`^(${STAMP})-(.+)\\.webm$`));
      check(match, `video chunk ${name} is not named <time>-<attendee id>[#content].webm`);
      if (!match) continue;
      if (!streams.has(match[2])) streams.set(match[2], []);
      streams.get(match[2]).push({ name, at: stampMs(match[1]) });
    }
    check(JSON.stringify([...streams.keys()].sort()) === JSON.stringify([...people.map((p) => p.id), `${ana.id}#content`].sort()),
      `the video chunks are not of each camera and the share: ${[...streams.keys()]}`);
    for (const [stream, chunks] of streams) {
      const owner = people.find((p) => stream.startsWith(p.id));
      const who = `${owner?.name ?? stream}${stream.endsWith('#content') ? '#content' : ''}`;
      const lengths = [];
      for (const [i, { name, at }] of chunks.entries()) {
        const seconds = await plays(join(captured, 'video', name), `video chunk ${name} (${who})`);
        if (i < chunks.length - 1) {
          const expected = (chunks[i + 1].at - at) / 1000;
          lengths.push(`${seconds.toFixed(3)}/${expected.toFixed(3)}`);
          const abutting = Math.abs(seconds - expected) <= expected / 100;
          const cutAtFive = Math.abs(seconds - 5) <= 0.05 && seconds <= expected * 1.01;
          check(abutting || cutAtFive,
            `video chunk ${name} (${who}) lasts ${seconds} s (ffprobe), but the next chunk of ${who} is named ${expected.toFixed(3)} s later`);
        } else {
          lengths.push(`${seconds.toFixed(3)} (last)`);
        }
      }
      log(`video chunks of ${who}: ${chunks.length}, lasting/named apart [${lengths.join(' ')}] s`);
    }

    assert.deepEqual(problems, [], `the recording has ${problems.length} problem(s)`);
  } finally {
    await client.send(new DeleteMeetingCommand({ MeetingId: Meeting.MeetingId })).catch(() => {});
  }
});
