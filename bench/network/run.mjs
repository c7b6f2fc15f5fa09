// The network-conditions benchmark (issue 23, item 5): official-client Chromium pages in a
// Carillon meeting, and the same pages peer to peer as the same-run baseline, each page's media
// through its own user-space impairment proxy (impair.mjs), under a set of network conditions.
//
//   node bench/network/run.mjs [--quick] [--seconds N] [--repeat N] [--server NAME=PATH]...
//
// Per condition and system, three pages, each in its own Chromium process, with the same fake
// microphone (a speech-like WAV) and the same busy 960x540 @ 15 fps canvas camera:
//   publisher  sends camera and microphone; its link is clean;
//   viewer A   its link carries the condition (both directions, or the downlink for the caps);
//   viewer B   a clean viewer of the same publisher.
// Carillon: all three join one meeting with amazon-chime-sdk-js (the demo page, simulcast on,
// so with three attendees the camera goes out as low 240x135 + hi 960x540); each page's
// setRemoteDescription rewrites the server's host candidate to its own proxy. p2p: the publisher
// opens one plain RTCPeerConnection per viewer (VP8, one layer up to 1200 kbit/s like the SDK's
// hi layer; a p2p receiver cannot take simulcast), the viewer answers with its microphone; the
// runner does the signaling and munges candidates so the viewer reaches the publisher only
// through its proxy. The figures come from the viewers' getStats (inbound-rtp), sampled in the
// page every 250 ms, counted over the measurement window after a warm-up.
// Writes bench/results/<date>-network[-quick].md and .json. Timings are reported, never asserted.
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir, cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { freeUdpPort, startProxy as startImpairProxy } from './proxy.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const web = join(root, 'web');
const { launchBrowser, sleep, writeWav } = await import(join(web, 'harness.mjs'));
const sdkRequire = createRequire(join(web, 'package.json'));
const { ChimeSDKMeetingsClient, CreateMeetingCommand, CreateAttendeeCommand, DeleteMeetingCommand } = sdkRequire('@aws-sdk/client-chime-sdk-meetings');
const pageScript = readFileSync(join(here, 'page.js'), 'utf8');

// ---------------------------------------------------------------------------------------------
// Options

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const servers = [];
let seconds = quick ? 20 : 40;
// Each condition and system is run this many times (interleaved); the tables show every run's value.
let repeat = 1;
for (let i = 0; i < argv.length; i += 1) {
  if (argv[i] === '--server') {
    const [name, ...rest] = (argv[++i] ?? '').split('=');
    if (!name || rest.length === 0) throw new Error('--server NAME=PATH');
    servers.push({ name, path: resolve(rest.join('=')) });
  } else if (argv[i] === '--seconds') {
    seconds = Number(argv[++i]);
  } else if (argv[i] === '--render') {
    i += 1;
  } else if (argv[i] === '--repeat') {
    repeat = Math.max(1, Number(argv[++i]) || 1);
  } else if (argv[i] === '--only') {
    // Development aid: --only KEY[,KEY] runs only those conditions.
    process.env.BENCH_ONLY = argv[++i];
  } else if (argv[i] === '--no-p2p') {
    process.env.BENCH_NO_P2P = '1';
  } else if (argv[i] !== '--quick') {
    throw new Error(`unknown option ${argv[i]} (use --quick, --seconds N, --server NAME=PATH)`);
  }
}
if (servers.length === 0 && !argv.includes('--render')) {
  const fallback = process.env.CARILLON_BIN
    ?? [join(root, 'target/release/carillon'), join(root, 'target/debug/carillon')].find((p) => existsSync(p));
  if (!fallback) throw new Error('no carillon binary: build one, or pass --server NAME=PATH (or CARILLON_BIN)');
  servers.push({ name: 'carillon', path: resolve(fallback) });
}
for (const { path } of servers) if (!existsSync(path)) throw new Error(`no such binary: ${path}`);

const warmupSeconds = quick ? 10 : 15;
const CONDITIONS = [
  { key: 'clean', title: 'Clean', note: 'no impairment' },
  { key: 'loss3-delay40', title: '3 % loss + 40 ± 10 ms each way', note: "viewer A's link, both directions", impair: { loss: 0.03, delayMs: 40, jitterMs: 10 } },
  { key: 'loss1-rtt150', title: '1 % loss + 150 ms RTT', note: "viewer A's link: 1 % loss and 75 ms each way", impair: { loss: 0.01, delayMs: 75, jitterMs: 0 } },
  { key: 'cap500', title: 'Downlink capped at 500 kbit/s (simulcast)', note: "viewer A's downlink, applied once A shows 960x540 (at least 15 s after the camera starts); 100 ms drop-tail queue", cap: 500 },
  { key: 'cap250', title: 'Downlink capped at 250 kbit/s (simulcast)', note: "as above at 250 kbit/s", cap: 250 },
  { key: 'burst2s', title: 'Loss burst of 2 s', note: "viewer A's link drops everything, both ways, for 2 s a third into the window", burstMs: 2000 },
];
let conditions = quick ? CONDITIONS.filter((c) => c.key === 'clean' || c.key === 'loss3-delay40') : CONDITIONS;
if (process.env.BENCH_ONLY) conditions = CONDITIONS.filter((c) => process.env.BENCH_ONLY.split(',').includes(c.key));
const systems = [...servers.map((s) => ({ kind: 'carillon', ...s })), ...(process.env.BENCH_NO_P2P ? [] : [{ kind: 'p2p', name: 'p2p' }])];

// ---------------------------------------------------------------------------------------------
// Children: every process started here is killed when the runner ends, however it ends.

const children = new Set();
function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}
function killChildren() {
  for (const child of children) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}
process.on('exit', killChildren);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    console.error(`network bench: ${signal}, stopping`);
    killChildren();
    process.exit(130);
  });
}

const log = (...args) => console.error(new Date().toISOString().slice(11, 19), ...args);

/** A started impair.mjs in front of `target`, killed with the runner. */
const startProxy = (target) => startImpairProxy(target, track);

/** CPU seconds a process has used so far (Linux /proc; null elsewhere). */
function processCpuSeconds(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, USER_HZ = 100
  } catch {
    return null;
  }
}

/** The machine's [busy, total] CPU jiffies so far (Linux /proc/stat). */
function machineCpu() {
  try {
    const [, ...values] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/);
    const n = values.map(Number);
    const idle = n[3] + (n[4] ?? 0);
    const total = n.slice(0, 8).reduce((a, b) => a + b, 0);
    return [total - idle, total];
  } catch {
    return null;
  }
}

const credentials = { accessKeyId: 'AKIDNETWORKBENCH', secretAccessKey: 'network-bench-secret' };

/** `carillon serve` from `path` on loopback, media on a known UDP port (the proxies' target). */
async function startServer(name, path) {
  const data = mkdtempSync(join(tmpdir(), `carillon-netbench-${name}-`));
  const mediaPort = await freeUdpPort();
  const child = track(spawn(path, ['serve', '--listen', '127.0.0.1:0', '--data-dir', data, '--admin-listen', 'off',
    '--media-listen', `127.0.0.1:${mediaPort}`], {
    env: { ...process.env, CARILLON_ACCESS_KEY_ID: credentials.accessKeyId, CARILLON_SECRET_ACCESS_KEY: credentials.secretAccessKey, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  }));
  const logLines = [];
  // Development aid: BENCH_SERVER_LOG=PATH keeps the whole server log (with RUST_LOG=debug, say).
  const logFile = process.env.BENCH_SERVER_LOG ? createWriteStream(process.env.BENCH_SERVER_LOG, { flags: 'a' }) : null;
  createInterface({ input: child.stderr }).on('line', (line) => {
    logFile?.write(`${line}\n`);
    logLines.push(line);
    if (logLines.length > 500) logLines.shift();
  });
  const url = await new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      if (line.includes('listening on')) resolve(`http://${line.split('listening on ')[1].split(' ')[0]}`);
    });
    lines.on('close', () => reject(new Error(`${path} exited before its banner: ${logLines.slice(-5).join(' | ')}`)));
  });
  const client = new ChimeSDKMeetingsClient({ endpoint: url, region: 'us-east-1', credentials });
  return {
    url, client, mediaPort, logLines, pid: child.pid,
    stop: () => { child.kill('SIGTERM'); setTimeout(() => child.kill('SIGKILL'), 3000).unref(); rmSync(data, { recursive: true, force: true }); },
  };
}

// ---------------------------------------------------------------------------------------------
// Media: the fake microphone and the p2p page's origin

/** A speech-like 16-bit mono 48 kHz WAV: a voiced 110-180 Hz buzz with formants and a ~4 Hz
 * syllable envelope, in talk spurts of 1.6 s with pauses of 0.9 s of digital silence between
 * them, as people talk (`silent` gives 10 s of silence: a listener who says nothing). Pauses
 * matter: what a listener gets while nobody talks is where a server's downlink can have holes
 * that the browser conceals. */
function speechWav(path, { silent = false } = {}, secondsLong = 10) {
  const rate = 48000;
  const samples = new Array(rate * secondsLong);
  let phase = 0;
  for (let i = 0; i < samples.length; i += 1) {
    const t = i / rate;
    const f0 = 145 + 35 * Math.sin(2 * Math.PI * 0.7 * t);
    phase += (2 * Math.PI * f0) / rate;
    const formants = [[1, 1], [2, 0.8], [3, 0.6], [5, 0.35], [8, 0.2], [13, 0.12], [19, 0.06]];
    let v = 0;
    for (const [h, a] of formants) v += a * Math.sin(h * phase);
    const talking = !silent && t % 2.5 < 1.6;
    const envelope = talking
      ? 0.3 + 0.7 * Math.abs(Math.sin(Math.PI * 3.7 * t + Math.sin(2 * Math.PI * 0.3 * t)))
      : 0;
    samples[i] = Math.max(-1, Math.min(1, (v / 3.2) * envelope)) * (14000 / 32767);
  }
  writeWav(path, samples, rate);
}

const scratch = mkdtempSync(join(tmpdir(), 'carillon-netbench-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
// The publisher talks; the viewers listen, their microphones open but silent.
const wavs = { talker: join(scratch, 'speech.wav'), listener: join(scratch, 'silence.wav') };
speechWav(wavs.talker);
speechWav(wavs.listener, { silent: true });

const p2pOrigin = await new Promise((resolve) => {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><meta charset="utf-8"><title>p2p baseline</title><body></body>');
  });
  server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${server.address().port}`));
  server.unref();
});

// ---------------------------------------------------------------------------------------------
// A scenario: one condition, one system

const ROLES = ['publisher', 'viewerA', 'viewerB'];

async function newPage(role, config, cleanup) {
  const browser = await launchBrowser([
    `--use-file-for-fake-audio-capture=${role === 'publisher' ? wavs.talker : wavs.listener}`,
    '--disable-background-timer-throttling',
    '--disable-renderer-backgrounding',
    '--disable-backgrounding-occluded-windows',
    // Real host addresses in the p2p SDP (the runner munges them), as after a getUserMedia grant.
    '--disable-features=WebRtcHideLocalIpsWithMdns',
  ]);
  cleanup.push(() => browser.close().catch(() => {}));
  const proc = browser.process();
  if (proc) track(proc);
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.evaluateOnNewDocument(`window.__benchConfig = ${JSON.stringify(config)};\n${pageScript}`);
  return { role, browser, page, errors, call: (fn, ...args) => page.evaluate(fn, ...args) };
}

const waitUntil = async (what, fn, timeoutMs, everyMs = 250) => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
};

const lastSample = (page) => page.evaluate(() => window.__bench.samples.at(-1) ?? null);

async function setupCarillon(system, condition, server, cleanup) {
  const pages = {};
  const proxies = {};
  for (const role of ROLES) {
    proxies[role] = await startProxy(`127.0.0.1:${server.mediaPort}`);
    cleanup.push(() => proxies[role].close());
    pages[role] = await newPage(role, { proxyPort: proxies[role].port, rewrite: true }, cleanup);
  }
  if (condition.impair) await proxies.viewerA.send({ set: condition.impair });
  const { Meeting } = await server.client.send(new CreateMeetingCommand({ MediaRegion: 'us-east-1', ExternalMeetingId: `netbench-${condition.key}-${Date.now()}` }));
  cleanup.push(() => server.client.send(new DeleteMeetingCommand({ MeetingId: Meeting.MeetingId })).catch(() => {}));
  await Promise.all(ROLES.map(async (role) => {
    const { page } = pages[role];
    await page.goto(`${server.url}/demo/`);
    await page.waitForFunction(() => window.carillon !== undefined, { timeout: 15000 });
  }));
  for (const role of ROLES) {
    const { Attendee } = await server.client.send(new CreateAttendeeCommand({ MeetingId: Meeting.MeetingId, ExternalUserId: role }));
    pages[role].attendee = Attendee;
  }
  await Promise.all(ROLES.map((role) => Promise.race([
    pages[role].page.evaluate((m, a) => window.carillon.join({ Meeting: m }, { Attendee: a }, { simulcast: true }), Meeting, pages[role].attendee),
    sleep(30000).then(() => { throw new Error(`${role} did not join within 30 s`); }),
  ])));
  for (const role of ROLES) {
    await waitUntil(`${role} sees all three`, () => pages[role].page.evaluate(() => window.carillon.roster().length === 3), 15000);
  }
  for (const role of ROLES) await pages[role].page.evaluate(() => window.__bench.startSampling(250));
  await pages.publisher.page.evaluate(() => window.carillon.startCamera(window.__bench.camera(15)));
  return { pages, proxies, tCam: Date.now() };
}

const hostCandidate = (sdp) => {
  const m = sdp.match(/^a=candidate:\S+ \d+ udp \d+ (\d+\.\d+\.\d+\.\d+) (\d+) typ host/im);
  if (!m) throw new Error('no IPv4 UDP host candidate in the offer');
  return `${m[1]}:${m[2]}`;
};
const withoutCandidates = (sdp) => sdp.split(/\r\n/).filter((l) => !/^a=(candidate|end-of-candidates)/.test(l)).join('\r\n');
/** The SDP with its candidates replaced by one: the proxy's listen address (in each m-section). */
const throughProxy = (sdp, port) => withoutCandidates(sdp).split(/\r\n/).flatMap((line) => (
  /^a=mid:/.test(line) ? [line, `a=candidate:1 1 udp 2122260223 127.0.0.1 ${port} typ host generation 0`, 'a=end-of-candidates'] : [line]
)).join('\r\n');

async function setupP2p(system, condition, cleanup) {
  const pages = {};
  const proxies = {};
  for (const role of ROLES) {
    pages[role] = await newPage(role, { rewrite: false }, cleanup);
    await pages[role].page.goto(`${p2pOrigin}/`);
    await pages[role].page.evaluate((camera) => window.__bench.openMedia(camera), role === 'publisher');
  }
  const publisher = pages.publisher.page;
  for (const viewer of ['viewerA', 'viewerB']) {
    const offer = await publisher.evaluate((id) => window.__bench.p2pOffer(id, 1200), viewer);
    proxies[viewer] = await startProxy(hostCandidate(offer));
    cleanup.push(() => proxies[viewer].close());
    if (viewer === 'viewerA' && condition.impair) await proxies.viewerA.send({ set: condition.impair });
    const answer = await pages[viewer].page.evaluate((id, sdp) => window.__bench.p2pAnswer(id, sdp), 'publisher', throughProxy(offer, proxies[viewer].port));
    await publisher.evaluate((id, sdp) => window.__bench.p2pAccept(id, sdp), viewer, withoutCandidates(answer));
  }
  for (const role of ROLES) await pages[role].page.evaluate(() => window.__bench.startSampling(250));
  const tCam = Date.now();
  for (const viewer of ['viewerA', 'viewerB']) {
    await waitUntil(`p2p ${viewer} connects`, () => publisher.evaluate((id) => window.__bench.p2pState(id) === 'connected', viewer), 20000);
  }
  return { pages, proxies, tCam };
}

async function runScenario(system, condition, server) {
  const cleanup = [];
  const events = {};
  try {
    const { pages, proxies, tCam } = system.kind === 'carillon'
      ? await setupCarillon(system, condition, server, cleanup)
      : await setupP2p(system, condition, cleanup);
    events.camera = tCam;
    const A = pages.viewerA.page;
    await waitUntil('viewer A decodes video', async () => ((await lastSample(A))?.video.framesDecoded ?? 0) > 0, 30000).catch((e) => log(`${system.name}/${condition.key}: ${e.message}`));
    let windowStart;
    let cpuStart;
    const markStart = () => { cpuStart = { server: server ? processCpuSeconds(server.pid) : null, machine: machineCpu(), t: Date.now() }; };
    if (condition.cap) {
      // The cap goes on once the high layer flows to A (and not before 15 s of camera).
      await waitUntil('viewer A shows 960x540', async () => ((await lastSample(A))?.video.frameWidth ?? 0) >= 960 && Date.now() - tCam >= 15000, 45000)
        .catch((e) => log(`${system.name}/${condition.key}: ${e.message}; capping anyway`));
      await sleep(Math.max(0, tCam + 15000 - Date.now()));
      events.cap = Date.now();
      markStart();
      await proxies.viewerA.send({ set: { down: { rateKbps: condition.cap } } });
      windowStart = events.cap;
      await sleep(seconds * 1000);
    } else {
      await sleep(Math.max(0, tCam + warmupSeconds * 1000 - Date.now()));
      windowStart = Date.now();
      markStart();
      if (condition.burstMs) {
        await sleep((seconds * 1000) / 3);
        events.burst = Date.now();
        await proxies.viewerA.send({ burst: { ms: condition.burstMs, dir: 'both' } });
        await sleep(seconds * 1000 - (Date.now() - windowStart));
      } else {
        await sleep(seconds * 1000);
      }
    }
    const windowEnd = Date.now();
    const serverCpuEnd = server ? processCpuSeconds(server.pid) : null;
    const machineEnd = machineCpu();
    const load = {
      serverCpuPercent: serverCpuEnd !== null && cpuStart.server !== null ? round((100 * (serverCpuEnd - cpuStart.server) * 1000) / (windowEnd - cpuStart.t), 0) : null,
      machineBusyPercent: machineEnd && cpuStart.machine ? round((100 * (machineEnd[0] - cpuStart.machine[0])) / (machineEnd[1] - cpuStart.machine[1]), 0) : null,
      loadavg1: round(loadavg()[0], 2),
    };
    const samples = {};
    for (const role of ROLES) samples[role] = await pages[role].page.evaluate(() => window.__bench.samples);
    const proxyStats = {};
    for (const [role, proxy] of Object.entries(proxies)) proxyStats[role] = (await proxy.send({ stats: true })).stats;
    const rewrites = {};
    for (const role of ROLES) rewrites[role] = await pages[role].page.evaluate(() => window.__bench.rewrites);
    const errors = Object.fromEntries(ROLES.map((r) => [r, pages[r].errors]));
    const tiles = system.kind === 'carillon' ? await A.evaluate(() => window.carillon.tiles().filter((t) => !t.localTile)) : null;
    return { ...summarize({ system, condition, samples, events, windowStart, windowEnd, proxies, proxyStats, rewrites, errors }), viewerATiles: tiles, load };
  } finally {
    for (const step of cleanup.reverse()) await step();
  }
}

// ---------------------------------------------------------------------------------------------
// Figures

const at = (samples, t) => samples.filter((s) => s.t <= t).at(-1) ?? samples[0];
const round = (x, digits = 2) => (x === null || x === undefined || !Number.isFinite(x) ? null : Number(x.toFixed(digits)));

/** fps over the 2 s before sample i. */
function fpsAt(samples, i) {
  const s = samples[i];
  const earlier = samples.filter((x) => x.t <= s.t - 2000).at(-1);
  if (!earlier) return null;
  return ((s.video.framesDecoded - earlier.video.framesDecoded) * 1000) / (s.t - earlier.t);
}

/** Gaps between decoded frames longer than `minMs` within [from, to] (an unfinished one counts). */
function frameGaps(samples, from, to, minMs = 1000) {
  const gaps = [];
  let lastChange = null;
  let lastFrames = null;
  for (const s of samples) {
    if (s.t > to) break;
    if (lastFrames !== null && s.video.framesDecoded > lastFrames) {
      if (lastChange !== null && s.t >= from && s.t - lastChange > minMs) gaps.push({ start: lastChange, ms: s.t - lastChange });
      lastChange = s.t;
    } else if (lastFrames === null) {
      lastChange = s.t;
    }
    lastFrames = s.video.framesDecoded;
  }
  const end = Math.min(to, samples.at(-1)?.t ?? to);
  if (lastChange !== null && end - lastChange > minMs) gaps.push({ start: lastChange, ms: end - lastChange, ongoing: true });
  return gaps;
}

function viewerFigures(samples, from, to, tCam) {
  if (!samples.length) return { error: 'no samples' };
  const s0 = at(samples, from);
  const s1 = at(samples, to);
  const dt = (s1.t - s0.t) / 1000;
  const a = (k) => s1.audio[k] - s0.audio[k];
  const v = (k) => s1.video[k] - s0.video[k];
  const first = samples.find((s) => s.video.framesDecoded > 0);
  const hd = samples.find((s) => s.video.frameWidth >= 960);
  const inWindow = samples.filter((s) => s.t >= from && s.t <= to);
  const maxWidth = Math.max(0, ...inWindow.map((s) => s.video.frameWidth));
  const last10 = at(samples, to - 10000);
  const pair = [...samples].reverse().find((s) => s.pairs?.length)?.pairs ?? [];
  return {
    windowSeconds: round(dt, 1),
    audio: {
      concealment: a('totalSamplesReceived') > 0 ? a('concealedSamples') / a('totalSamplesReceived') : null,
      silentConcealment: a('totalSamplesReceived') > 0 ? a('silentConcealedSamples') / a('totalSamplesReceived') : null,
      concealedSamples: a('concealedSamples'),
      silentConcealedSamples: a('silentConcealedSamples'),
      totalSamplesReceived: a('totalSamplesReceived'),
      concealmentEvents: a('concealmentEvents'),
      packetsLost: a('packetsLost'),
      packetsReceived: a('packetsReceived'),
      jitterBufferMs: a('jitterBufferEmittedCount') > 0 ? (a('jitterBufferDelay') / a('jitterBufferEmittedCount')) * 1000 : null,
      streams: s1.audio.streams,
    },
    video: {
      framesDecoded: v('framesDecoded'),
      fps: dt > 0 ? v('framesDecoded') / dt : null,
      fpsLast10s: s1.t - last10.t > 0 ? ((s1.video.framesDecoded - last10.video.framesDecoded) * 1000) / (s1.t - last10.t) : null,
      freezeCount: v('freezeCount'),
      totalFreezesDuration: v('totalFreezesDuration'),
      jitterBufferMs: v('jitterBufferEmittedCount') > 0 ? (v('jitterBufferDelay') / v('jitterBufferEmittedCount')) * 1000 : null,
      pauseCount: v('pauseCount'),
      nackCount: v('nackCount'),
      pliCount: v('pliCount'),
      packetsLost: v('packetsLost'),
      kbps: dt > 0 ? (v('bytesReceived') * 8) / dt / 1000 : null,
      resolutionAtEnd: `${s1.video.frameWidth}x${s1.video.frameHeight}`,
      maxWidthInWindow: maxWidth,
      firstFrameSeconds: first ? (first.t - tCam) / 1000 : null,
      secondsFirstFrameTo960x540: first && hd ? (hd.t - first.t) / 1000 : null,
      gapsOver1s: frameGaps(samples, from, to).map((g) => ({ atSeconds: round((g.start - from) / 1000, 1), seconds: round(g.ms / 1000, 2), ongoing: g.ongoing ?? false })),
    },
    selectedPairs: pair,
  };
}

function capFigures(samples, tCap, to) {
  let lowAt = null;
  samples.forEach((s, i) => {
    if (lowAt !== null || s.t < tCap || s.t > to) return;
    const fps = fpsAt(samples, i);
    if (s.video.frameWidth > 0 && s.video.frameWidth <= 320 && fps !== null && fps >= 12) lowAt = s.t;
  });
  const gaps = frameGaps(samples, tCap, to);
  const before = at(samples, tCap);
  return {
    resolutionWhenCapped: `${before.video.frameWidth}x${before.video.frameHeight}`,
    secondsCapToLowLayer12fps: lowAt === null ? null : (lowAt - tCap) / 1000,
    freezesOver1sAfterCap: gaps.length,
    freezeSecondsOver1sAfterCap: round(gaps.reduce((sum, g) => sum + g.ms, 0) / 1000, 2),
  };
}

function summarize({ system, condition, samples, events, windowStart, windowEnd, proxies, proxyStats, rewrites, errors }) {
  const A = viewerFigures(samples.viewerA, windowStart, windowEnd, events.camera);
  const B = viewerFigures(samples.viewerB, windowStart, windowEnd, events.camera);
  if (condition.cap) Object.assign(A, capFigures(samples.viewerA, events.cap, windowEnd));
  if (events.burst) {
    // Recovery: from the end of the burst to the next decoded frame.
    const after = samples.viewerA.filter((s) => s.t >= events.burst + condition.burstMs);
    const base = at(samples.viewerA, events.burst + condition.burstMs);
    const next = after.find((s) => s.video.framesDecoded > base.video.framesDecoded);
    A.secondsBurstEndToNextFrame = next ? round((next.t - events.burst - condition.burstMs) / 1000, 2) : null;
  }
  const pubSend = [...samples.publisher].reverse().find((s) => s.send?.length)?.send ?? [];
  // Did A's media really go through its proxy? Its selected pair's remote end is the proxy (the
  // Carillon pages) or the proxy carried its downlink (p2p), and the proxy forwarded megabytes.
  const proxyPort = proxies.viewerA?.port;
  const down = proxyStats.viewerA?.down;
  const viaProxy = Boolean(down && down.bytesForwarded > 100000
    && (system.kind === 'p2p' || A.selectedPairs.some((p) => p.remote?.startsWith(`127.0.0.1:${proxyPort}`))));
  // A's course, one row a second from the camera start: [s, width, height, framesDecoded,
  // concealedSamples, totalSamplesReceived, video bytesReceived, video freezeCount] (for plots and
  // second looks).
  const timelineA = [];
  for (const s of samples.viewerA) {
    if (timelineA.length && s.t - timelineA.at(-1).t < 1000) continue;
    timelineA.push(s);
  }
  return {
    system: system.name,
    condition: condition.key,
    timelineA: timelineA.map((s) => [round((s.t - windowStart) / 1000, 1), s.video.frameWidth, s.video.frameHeight, s.video.framesDecoded,
      s.audio.concealedSamples, s.audio.totalSamplesReceived, s.video.bytesReceived, s.video.freezeCount]),
    events: Object.fromEntries(Object.entries(events).map(([k, t]) => [k, round((t - windowStart) / 1000, 1)])),
    viewerA: A,
    viewerB: B,
    publisherSend: pubSend,
    proxy: proxyStats,
    viaProxy,
    candidateRewrites: rewrites,
    pageErrors: errors,
  };
}

// ---------------------------------------------------------------------------------------------
// Tables

const pct = (x) => (x === null || x === undefined ? '—' : `${(x * 100).toFixed(2)} %`);
const num = (x, d = 1) => (x === null || x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(d));
const rows = (condition) => {
  const list = [
    ['audio concealed (concealed / received samples)', (r) => pct(r.viewerA.audio.concealment)],
    ['audio silent concealed', (r) => pct(r.viewerA.audio.silentConcealment)],
    ['audio packets lost / received (50 a second sent)', (r) => `${r.viewerA.audio.packetsLost} / ${r.viewerA.audio.packetsReceived} in ${num(r.viewerA.windowSeconds, 0)} s`],
    ['audio mean jitter-buffer delay (ms)', (r) => num(r.viewerA.audio.jitterBufferMs, 0)],
    ['video fps (frames decoded / s)', (r) => num(r.viewerA.video.fps)],
    ['video freezes (count / total s)', (r) => `${r.viewerA.video.freezeCount} / ${num(r.viewerA.video.totalFreezesDuration, 2)}`],
    ['video mean jitter-buffer delay (ms)', (r) => num(r.viewerA.video.jitterBufferMs, 0)],
    ['video gaps > 1 s (250 ms sampling)', (r) => `${r.viewerA.video.gapsOver1s.length}${r.viewerA.video.gapsOver1s.length ? ` (${r.viewerA.video.gapsOver1s.map((g) => `${g.seconds}s${g.ongoing ? '…' : ''}`).join(', ')})` : ''}`],
    ['video resolution at end (max width in window)', (r) => `${r.viewerA.video.resolutionAtEnd} (${r.viewerA.video.maxWidthInWindow})`],
    ['video first frame after camera start (s)', (r) => num(r.viewerA.video.firstFrameSeconds)],
    ['video first frame → 960x540 (s)', (r) => num(r.viewerA.video.secondsFirstFrameTo960x540)],
    ['video kbit/s received', (r) => num(r.viewerA.video.kbps, 0)],
    ['video nackCount / packetsLost', (r) => `${r.viewerA.video.nackCount} / ${r.viewerA.video.packetsLost}`],
    ['proxy drops toward A, all media (loss / burst / queue)', (r) => { const d = r.proxy.viewerA.down; return `${d.lost} / ${d.burstDropped} / ${d.queueDropped} of ${d.packetsIn}`; }],
    ['ICE RTT of A\'s selected pair (ms)', (r) => num((r.viewerA.selectedPairs[0]?.rtt ?? NaN) * 1000, 0)],
  ];
  if (condition.cap) {
    list.push(
      ['A\'s resolution when the cap went on', (r) => r.viewerA.resolutionWhenCapped],
      ['cap → low layer (width ≤ 320) at ≥ 12 fps (s)', (r) => (r.viewerA.secondsCapToLowLayer12fps === null ? 'never' : num(r.viewerA.secondsCapToLowLayer12fps))],
      ['freezes > 1 s after the cap (count / s)', (r) => `${r.viewerA.freezesOver1sAfterCap} / ${num(r.viewerA.freezeSecondsOver1sAfterCap, 2)}`],
      ['capped viewer fps in the last 10 s (paused if ~0)', (r) => num(r.viewerA.video.fpsLast10s)],
      ['capped viewer\'s remote tile (SDK): active, size', (r) => (r.viewerATiles ? r.viewerATiles.map((t) => `${t.active ? 'active' : 'inactive'} ${t.width}x${t.height}`).join('; ') || 'none' : 'n/a')],
      ['uncapped viewer B: resolution at end, fps', (r) => `${r.viewerB.video.resolutionAtEnd}, ${num(r.viewerB.video.fps)}`],
    );
  }
  if (condition.burstMs) list.push(['burst end → next decoded frame (s)', (r) => num(r.viewerA.secondsBurstEndToNextFrame, 2)]);
  list.push(
    ['clean viewer B: audio concealed, packets received, fps', (r) => `${pct(r.viewerB.audio.concealment)}, ${r.viewerB.audio.packetsReceived}, ${num(r.viewerB.video.fps)}`],
    ['publisher sends (rid width×height, limitation)', (r) => r.publisherSend.map((l) => `${l.rid ?? '-'} ${l.width}×${l.height}${l.limitation && l.limitation !== 'none' ? ` ${l.limitation}` : ''}`).join('; ') || '—'],
    ['A media via its proxy', (r) => (r.viaProxy ? 'yes' : 'NO')],
    ['server CPU % of a core / machine busy % (window)', (r) => `${r.load?.serverCpuPercent ?? '—'} / ${r.load?.machineBusyPercent ?? '—'}`],
  );
  return list;
};

function markdown(results, meta, conditionList) {
  const { quick: isQuick, seconds: windowSeconds, warmupSeconds: warmup, repeat: runs = 1 } = meta;
  const out = [];
  out.push(`# Network conditions: Carillon vs peer to peer${isQuick ? ' (quick)' : ''}, ${meta.started}`, '');
  out.push(`Loopback, ${meta.cores} cores, Chromium ${meta.chromium}, amazon-chime-sdk-js ${meta.sdk}. Reproduce: \`bench/network/run${isQuick ? ' --quick' : ''}\`.`, '');
  out.push('Three pages per run, each its own Chromium with a fake microphone (the publisher talks in 1.6 s spurts with',
    '0.9 s pauses of silence; the viewers\' microphones are open and silent) and the same busy',
    '960x540 @ 15 fps canvas camera: the publisher (clean link), viewer A (whose link carries the condition) and',
    'viewer B (a clean viewer of the same publisher). Media goes through user-space UDP impairment proxies',
    '(`bench/network/impair.mjs`): in Carillon one per page (server candidate rewritten in the page), in p2p one per',
    'publisher-viewer connection (candidates munged by the runner), so A\'s path has one impaired hop in both. Carillon: the demo page (amazon-chime-sdk-js, simulcast on: low',
    '240x135 + hi 960x540 with three attendees). p2p: plain RTCPeerConnections, one per publisher-viewer pair, VP8',
    'single layer up to 1200 kbit/s (a p2p receiver cannot take simulcast: the publisher adapts that one encoding',
    'to the viewer\'s bandwidth estimate instead), signaling by the runner. Figures are viewer A\'s getStats',
    `(inbound-rtp) over the measurement window: ${windowSeconds} s after a ${warmup} s warm-up from the camera start, or for the caps`,
    `${windowSeconds} s from the moment the cap is applied. Signaling (WebSocket/HTTP) is not impaired, only media.`,
    ...(runs > 1 ? [`Each condition ran ${runs} times (interleaved with the other systems); a cell lists every run's value, separated by ‖.`] : []),
    'Timings are reported, never asserted; the machine may be busy, so absolute numbers are noisy.',
    'Note: Chrome\'s inbound-rtp packetsLost does not count a gap longer than its reordering threshold (50 packets, 1 s',
    'of audio) as loss (it reads it as a stream restart), so the burst shows in concealment, not in audio packets lost;',
    'the proxy\'s own drop counts are in the table. Times in the JSON timelines are seconds from the window start.', '',
    `Servers: ${meta.servers.map((s) => `${s.name} = \`${s.path}\``).join(', ')}.`, '');
  const names = meta.systems ?? [...meta.servers.map((s) => s.name), 'p2p'];
  for (const condition of conditionList) {
    out.push(`## ${condition.title}`, '', `_${condition.note}._`, '');
    out.push(`| | ${names.join(' | ')} |`, `|---|${names.map(() => '---').join('|')}|`);
    for (const [label, cell] of rows(condition)) {
      const cells = names.map((name) => {
        const runs = results.filter((x) => x.system === name && x.condition === condition.key);
        if (!runs.length) return '—';
        return runs.map((r) => {
          if (r.error) return `failed: ${r.error.slice(0, 80)}`;
          try {
            return cell(r);
          } catch {
            return '?';
          }
        }).join(' ‖ ');
      });
      out.push(`| ${label} | ${cells.join(' | ')} |`);
    }
    out.push('');
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Main

// --render FILE.json: only rewrite FILE.md from a run's JSON (after changing the tables).
const renderIndex = argv.indexOf('--render');
if (renderIndex >= 0) {
  const file = resolve(argv[renderIndex + 1]);
  const saved = JSON.parse(readFileSync(file, 'utf8'));
  writeFileSync(file.replace(/\.json$/, '.md'), `${markdown(saved.results, saved.meta, saved.conditions)}\n`);
  log(`rendered ${file.replace(/\.json$/, '.md')}`);
  process.exit(0);
}

const started = new Date();
const pad = (n) => String(n).padStart(2, '0');
const date = `${started.getFullYear()}-${pad(started.getMonth() + 1)}-${pad(started.getDate())}`;
const meta = {
  started: started.toISOString(),
  quick,
  seconds,
  repeat,
  warmupSeconds,
  cores: cpus().length,
  chromium: await (async () => {
    const b = await launchBrowser();
    const v = await b.version();
    await b.close();
    return v;
  })(),
  sdk: JSON.parse(readFileSync(join(web, 'node_modules/amazon-chime-sdk-js/package.json'), 'utf8')).version,
  servers: servers.map(({ name, path }) => ({ name, path })),
  systems: systems.map((s) => s.name),
};
log(`network bench: ${conditions.map((c) => c.key).join(', ')} × ${systems.map((s) => s.name).join(', ')}; ${seconds} s windows`);

const started_servers = new Map();
for (const s of servers) started_servers.set(s.name, await startServer(s.name, s.path));

const results = [];
const outDir = join(root, 'bench/results');
mkdirSync(outDir, { recursive: true });
// BENCH_NAME=NAME writes <date>-network-NAME (an experiment beside the day's main results).
const base = join(outDir, `${date}-network${quick ? '-quick' : ''}${process.env.BENCH_NAME ? `-${process.env.BENCH_NAME}` : ''}`);
const save = () => {
  writeFileSync(`${base}.json`, `${JSON.stringify({ meta, conditions, results }, null, 2)}\n`);
  writeFileSync(`${base}.md`, `${markdown(results, meta, conditions)}\n`);
};

const scenarioBudgetMs = (warmupSeconds + seconds + 45 + 120) * 1000;
for (let rep = 1; rep <= repeat; rep += 1) for (const condition of conditions) {
  for (const system of systems) {
    log(`${condition.key} / ${system.name}${repeat > 1 ? ` (run ${rep} of ${repeat})` : ''} ...`);
    const server = started_servers.get(system.name);
    let timer;
    try {
      const result = await Promise.race([
        runScenario(system, condition, server),
        new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`scenario over ${scenarioBudgetMs / 1000} s`)), scenarioBudgetMs); }),
      ]);
      results.push({ ...result, run: rep });
      const A = result.viewerA;
      log(`  A: audio concealed ${pct(A.audio.concealment)}, lost ${A.audio.packetsLost}; video ${num(A.video.fps)} fps, ${A.video.resolutionAtEnd}, freezes ${A.video.freezeCount}, via proxy ${result.viaProxy}`);
    } catch (error) {
      log(`  failed: ${error.stack ?? error}`);
      const serverLog = server?.logLines.slice(-20);
      results.push({ system: system.name, condition: condition.key, run: rep, error: String(error.message ?? error), serverLog });
    } finally {
      clearTimeout(timer);
    }
    save();
  }
}
for (const server of started_servers.values()) server.stop();
save();
log(`wrote ${base}.md and .json`);
process.exit(0);
