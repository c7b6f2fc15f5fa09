// What the browser tests share: a `carillon serve` of their own, headless Chromium with fake
// media devices, the demo page, and waiting.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import puppeteer from 'puppeteer-core';
import { Agent } from 'node:https';
import { ChimeSDKMeetingsClient } from '@aws-sdk/client-chime-sdk-meetings';
import { NodeHttpHandler } from '@smithy/node-http-handler';

export const binary = process.env.CARILLON_BIN ?? '../target/debug/carillon';
export const chromium = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';

/**
 * Starts `carillon serve` on `listen` (a free loopback port) with `credentials` as its API keys, the admin
 * listener on another free port if `admin` (else off), `args` added to its command line and `env`
 * to its environment. Its data lives in `dataDir`, by default a new directory named after `name`.
 * Resolves once its banner has named the API address (and the admin one) to
 * {server, url, address, adminUrl, client}: the process, the public base URL (MediaPlacement's),
 * the address it listens on, the admin base URL, and an SDK client (trusting the PEM certificate
 * `ca` when the server speaks HTTPS with a self-signed one).
 */
export async function startServer({ name, credentials, admin = false, listen = '127.0.0.1:0', args = [], env = {}, dataDir, ca }) {
  const data = dataDir ?? mkdtempSync(join(tmpdir(), `carillon-${name}-`));
  const server = spawn(binary, ['serve', '--listen', listen, '--data-dir', data,
    '--admin-listen', admin ? '127.0.0.1:0' : 'off', ...args], {
    env: {
      ...process.env,
      CARILLON_ACCESS_KEY_ID: credentials.accessKeyId,
      CARILLON_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      RUST_LOG: process.env.CARILLON_TEST_LOG ?? 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // The banner: "carillon is listening on ADDR ..." first, later (with the admin listener)
  // "metrics and readiness: http://ADMIN/metrics".
  const lines = createInterface({ input: server.stdout });
  const { url, address, adminUrl } = await new Promise((resolve, reject) => {
    let found = {};
    lines.on('line', (line) => {
      // "carillon is listening on ADDR (public URL URL)": http:// or, with --tls-cert, https://.
      if (line.includes('listening on')) {
        found = { ...found, url: line.match(/public URL ([^)\s]+)\)/)[1], address: line.split('listening on ')[1].split(' ')[0] };
      }
      if (line.includes('metrics and readiness')) found = { ...found, adminUrl: line.match(/http:\/\/[^/]+/)[0] };
      if (found.url && (!admin || found.adminUrl)) resolve(found);
    });
    lines.on('close', () => reject(new Error(`${binary} exited before its banner named its addresses`)));
  });
  return { server, url, address, adminUrl, client: sdkClient(url, credentials, ca) };
}

/** A TCP port free on 127.0.0.1 right now. */
export async function freeTcpPort() {
  const listener = createServer();
  await new Promise((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const { port } = listener.address();
  await new Promise((resolve) => listener.close(resolve));
  return port;
}

/** Resolves once something accepts TCP connections on 127.0.0.1:`port` (within 10 s). */
export async function listening(port) {
  for (let tries = 0; tries < 100; tries += 1) {
    const accepted = await new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1', () => { socket.end(); resolve(true); });
      socket.on('error', () => resolve(false));
    });
    if (accepted) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`nothing listens on port ${port}`);
}

/** A JS v3 SDK client for `endpoint`, trusting the PEM certificate `ca` if given. */
export function sdkClient(endpoint, credentials, ca) {
  return new ChimeSDKMeetingsClient({
    endpoint,
    region: 'us-east-1',
    credentials,
    ...(ca ? { requestHandler: new NodeHttpHandler({ httpsAgent: new Agent({ ca }) }) } : {}),
  });
}

/** Chromium flags for several pages of one browser publishing and rendering at once: none may be
 * throttled as hidden. */
export const NO_BACKGROUND_THROTTLING = [
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
];

/**
 * Writes a self-signed certificate for 127.0.0.1 and localhost (EC P-256, two days) with
 * Debian's openssl into `dir`; returns {cert, key}, the PEM files' paths.
 */
export function selfSignedCertificate(dir) {
  const cert = join(dir, 'server.crt');
  const key = join(dir, 'server.key');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
  return { cert, key };
}

/** Launches headless Chromium with fake camera and microphone, autoplay, and `extraArgs`. */
export function launchBrowser(extraArgs = []) {
  return puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      '--autoplay-policy=no-user-gesture-required',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      ...extraArgs,
    ],
  });
}

export const firefox = process.env.FIREFOX_BIN ?? '/usr/bin/firefox-esr';

/**
 * Launches Debian's headless Firefox ESR over WebDriver BiDi, with fake camera and microphone
 * (a tone), no permission prompts and autoplay allowed. Headless Firefox has no audio output, so
 * what a Firefox page hears is judged from its stats (`totalAudioEnergy`), not from a sound card.
 */
export function launchFirefox() {
  return puppeteer.launch({
    browser: 'firefox',
    executablePath: firefox,
    headless: true,
    extraPrefsFirefox: {
      'media.navigator.streams.fake': true,
      'media.navigator.permission.disabled': true,
      'media.autoplay.default': 0,
      // Several pages of one browser publish and render at once: none may be throttled, nor
      // wait for the foreground to play media.
      'dom.min_background_timeout_value': 4,
      'dom.timeout.enable_budget_timer_throttling': false,
      'media.block-autoplay-until-in-foreground': false,
    },
  });
}

/**
 * Makes `page` keep every RTCPeerConnection the SDK creates (`window.carillonPeers`, to read
 * its configuration, candidates and stats) and how each signaling WebSocket closes
 * (`window.carillonSocketCloses`). Call before loading the page.
 */
export function recordConnections(page) {
  return page.evaluateOnNewDocument(() => {
    const Native = window.RTCPeerConnection;
    window.carillonPeers = [];
    const Recorded = function RTCPeerConnection(...args) {
      const peer = new Native(...args);
      window.carillonPeers.push(peer);
      return peer;
    };
    Recorded.prototype = Native.prototype;
    Object.setPrototypeOf(Recorded, Native);
    window.RTCPeerConnection = Recorded;
    const NativeSocket = window.WebSocket;
    window.carillonSocketCloses = [];
    const RecordedSocket = function WebSocket(...args) {
      const socket = new NativeSocket(...args);
      socket.addEventListener('close', (event) => window.carillonSocketCloses.push({ code: event.code, wasClean: event.wasClean }));
      return socket;
    };
    RecordedSocket.prototype = NativeSocket.prototype;
    Object.setPrototypeOf(RecordedSocket, NativeSocket);
    window.WebSocket = RecordedSocket;
  });
}

/**
 * Makes every RTCPeerConnection of `page` use only the TURN URIs that match `pattern`, as a client
 * on a network that blocks the others would end up with (for instance `/transport=tcp/` where no
 * UDP gets out). Call before loading the page.
 */
export function keepIceServers(page, pattern) {
  return page.evaluateOnNewDocument((source) => {
    const keep = new RegExp(source);
    const Native = window.RTCPeerConnection;
    const Restricted = function RTCPeerConnection(configuration = {}, ...rest) {
      const iceServers = (configuration.iceServers ?? [])
        .map((server) => ({ ...server, urls: [].concat(server.urls).filter((uri) => keep.test(uri)) }))
        .filter((server) => server.urls.length > 0);
      return new Native({ ...configuration, iceServers }, ...rest);
    };
    Restricted.prototype = Native.prototype;
    Object.setPrototypeOf(Restricted, Native);
    window.RTCPeerConnection = Restricted;
  }, pattern.source);
}

/** Loads the demo page of the server at `url` into `page` and waits for its hooks. */
export async function openDemo(page, url) {
  await page.goto(`${url}/demo/`);
  await page.waitForFunction(() => window.carillon !== undefined);
  return page;
}

/** A new page of `browser` on the demo page, printing its errors (prefixed with `who`). */
export async function openPage(browser, url, who) {
  const page = await browser.newPage();
  page.on('pageerror', (error) => console.error(who ? `${who} page error:` : 'page error:', error.message));
  return openDemo(page, url);
}

/**
 * Warnings amazon-chime-sdk-js logs as a call ends, whatever the server does:
 * - (Firefox) the leaver's remote video tracks fire `ended` after the SDK has already removed
 *   their tiles on leaving, so it removes each again and finds no stream
 *   (CreatePeerConnectionTask removeRemoteVideoTrack, "no stream found for tile=null");
 * - the one who stays gets INDEX without the leaver's video and, until its SUBSCRIBE_ACK, its
 *   stats collector still reads the old receiver's `inbound-rtp`, whose stream id the new INDEX
 *   no longer names (StatsCollector addRenderResolutionToVideoDownstreamMetrics, "No attendee
 *   found for ssrc N"): seen in Firefox, and in Chromium when a stats tick falls in that window.
 */
export const TEARDOWN_WARNINGS = [
  /\[WARN\] carillon - no stream found for tile=null$/,
  /\[WARN\] carillon - No attendee found for ssrc \d+$/,
];

/** Waits until `fn(arg)` holds in `page`, polling every 100 ms. */
export const waitFor = (page, fn, arg, timeout = 15000) => page.waitForFunction(fn, { timeout, polling: 100 }, arg);

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Writes 16-bit mono samples (numbers in [-1, 1]) at `rate` Hz as a PCM WAV file, which
 * Chromium plays as its fake microphone (--use-file-for-fake-audio-capture). */
export function writeWav(path, samples, rate = 48000) {
  const data = Buffer.alloc(samples.length * 2);
  samples.forEach((sample, i) => data.writeInt16LE(Math.round(Math.max(-1, Math.min(1, sample)) * 32767), i * 2));
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVE', 8);
  header.write('fmt ', 12);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36);
  header.writeUInt32LE(data.length, 40);
  writeFileSync(path, Buffer.concat([header, data]));
}

/** Reads with `read` every 100 ms until `accept` holds; on timeout fails with what it read last. */
export async function until(description, read, accept, timeout) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await read();
    if (accept(value)) return value;
    if (Date.now() > deadline) throw new Error(`${description}: not within ${timeout} ms; last read ${JSON.stringify(value)}`);
    await sleep(100);
  }
}

/** Within VP8's colour error of `target` on every channel. */
export const looksLike = (target) => (rgb) => rgb !== null && rgb.every((c, i) => Math.abs(c - target[i]) < 80);

// What a viewer shows, for people {name, call(hook, ...args)} whose page has the demo's hooks.

/** Waits until `viewer` has an active remote tile for `attendeeId` and returns it. */
export function remoteTile(viewer, attendeeId, timeout = 10000) {
  return until(
    `${viewer.name} shows a tile for ${attendeeId}`,
    () => viewer.call('tiles'),
    (tiles) => tiles.some((t) => t.attendeeId === attendeeId && !t.localTile && t.active),
    timeout,
  ).then((tiles) => tiles.find((t) => t.attendeeId === attendeeId && !t.localTile));
}

export function tileGone(viewer, attendeeId, timeout) {
  return until(
    `${viewer.name} removes the tile for ${attendeeId}`,
    () => viewer.call('tiles'),
    (tiles) => !tiles.some((t) => t.attendeeId === attendeeId),
    timeout,
  );
}

/** Waits until the tile of `attendeeId` on `viewer` has decoded more than `count` further frames. */
export async function decodes(viewer, attendeeId, count, timeout = 5000) {
  const start = await viewer.call('videoFramesDecoded', attendeeId);
  await until(`${viewer.name} decodes more than ${count} frames of ${attendeeId}`, () => viewer.call('videoFramesDecoded', attendeeId),
    (frames) => frames - start > count, timeout);
}

export function showsColour(viewer, attendeeId, colour, timeout = 5000) {
  return until(`${viewer.name} shows ${attendeeId} in rgb(${colour})`, () => viewer.call('tileColour', attendeeId), looksLike(colour), timeout);
}

/** Waits until `listener`'s inbound audio energy rises over `ms` (the other side's tone arrives). */
export async function hears(listener, ms = 2000) {
  const first = await listener.call('audioEnergy');
  await sleep(ms);
  const second = await listener.call('audioEnergy');
  return { first, second, heard: second > first };
}

/** A JS v3 SDK media pipelines client (chime-sdk-media-pipelines, SigV4 service `chime`) for
 * `endpoint`: Carillon serves that API on the same address as the meetings API. */
export async function mediaPipelinesClient(endpoint, credentials) {
  const { ChimeSDKMediaPipelinesClient } = await import('@aws-sdk/client-chime-sdk-media-pipelines');
  return new ChimeSDKMediaPipelinesClient({ endpoint, region: 'us-east-1', credentials });
}

/** Writes a mono 48 kHz WAV of a sine tone of `frequency` Hz at about -9 dBFS, `seconds` long;
 * with a whole number of cycles in it, Chromium loops it seamlessly as the fake microphone. */
export function toneWav(path, frequency, seconds = 6) {
  const rate = 48000;
  writeWav(path, Array.from({ length: rate * seconds }, (_, i) => Math.sin((2 * Math.PI * frequency * i) / rate) * (12000 / 32767)), rate);
}
