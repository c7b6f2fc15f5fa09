// What the browser tests share: a `carillon serve` of their own, headless Chromium with fake
// media devices, the demo page, and waiting.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import puppeteer from 'puppeteer-core';
import { ChimeSDKMeetingsClient } from '@aws-sdk/client-chime-sdk-meetings';

export const binary = process.env.CARILLON_BIN ?? '../target/debug/carillon';
export const chromium = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';

/**
 * Starts `carillon serve` on a free loopback port with `credentials` as its API keys, the admin
 * listener on another free port if `admin` (else off), `args` added to its command line and `env`
 * to its environment. Its data lives in `dataDir`, by default a new directory named after `name`.
 * Resolves once its banner has named the API address (and the admin one) to
 * {server, url, adminUrl, client}: the process, the API and admin base URLs, and an SDK client.
 */
export async function startServer({ name, credentials, admin = false, args = [], env = {}, dataDir }) {
  const data = dataDir ?? mkdtempSync(join(tmpdir(), `carillon-${name}-`));
  const server = spawn(binary, ['serve', '--listen', '127.0.0.1:0', '--data-dir', data,
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
  const { url, adminUrl } = await new Promise((resolve, reject) => {
    let found = {};
    lines.on('line', (line) => {
      if (line.includes('listening on')) found = { ...found, url: `http://${line.split('listening on ')[1].split(' ')[0]}` };
      if (line.includes('metrics and readiness')) found = { ...found, adminUrl: line.match(/http:\/\/[^/]+/)[0] };
      if (found.url && (!admin || found.adminUrl)) resolve(found);
    });
    lines.on('close', () => reject(new Error(`${binary} exited before its banner named its addresses`)));
  });
  const client = new ChimeSDKMeetingsClient({ endpoint: url, region: 'us-east-1', credentials });
  return { server, url, adminUrl, client };
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
