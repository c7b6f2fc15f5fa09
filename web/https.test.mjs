// HTTPS: the demo page, the API and signaling over TLS, two ways an operator runs it.
//  1. Built in: `carillon serve --tls-cert … --tls-key …` (rustls) serves https:// and wss://.
//  2. Behind a TLS-terminating reverse proxy: Debian's nginx in front of a plain-HTTP Carillon,
//     with the recipe in docs/network.md (WebSocket upgrade headers, `--public-url https://<proxy>`).
// In both, two Chromium pages (self-signed certificate: --ignore-certificate-errors) join a
// meeting from the https:// demo page, hear each other and exchange a data message, with the
// signaling URL wss://.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateAttendeeCommand, CreateMeetingCommand } from '@aws-sdk/client-chime-sdk-meetings';
import {
  freeTcpPort, hears, launchBrowser, listening, openDemo, sdkClient, selfSignedCertificate, startServer, waitFor,
} from './harness.mjs';

const credentials = { accessKeyId: 'AKIDHTTPSTEST', secretAccessKey: 'https-test-secret' };
const nginx = process.env.NGINX_BIN ?? '/usr/sbin/nginx';
const dir = mkdtempSync(join(tmpdir(), 'carillon-https-'));
// nginx's workers (another user when run as root) create their temporary files under it.
chmodSync(dir, 0o755);
const { cert, key } = selfSignedCertificate(dir);
let browser;

before(async () => {
  browser = await launchBrowser(['--ignore-certificate-errors']);
});

after(async () => {
  await browser?.close();
});

/** A JS v3 SDK client for `endpoint` that trusts the self-signed certificate. */
const trusting = (endpoint) => sdkClient(endpoint, credentials, readFileSync(cert));

/** Two pages join a meeting of `client` from the demo page at `pageUrl`; both hear the other. */
async function twoJoinOver(pageUrl, client) {
  const { Meeting } = await client.send(new CreateMeetingCommand({ MediaRegion: 'us-east-1', ExternalMeetingId: 'https' }));
  assert.match(Meeting.MediaPlacement.SignalingUrl, /^wss:\/\//, 'signaling over TLS');
  const people = [];
  try {
    for (const name of ['José', 'Zoë']) {
      const { Attendee } = await client.send(new CreateAttendeeCommand({ MeetingId: Meeting.MeetingId, ExternalUserId: name }));
      const page = await browser.newPage();
      const errors = [];
      page.on('pageerror', (error) => errors.push(error.message));
      await openDemo(page, pageUrl);
      assert.equal(await page.evaluate(() => window.isSecureContext), true, 'the page is a secure context');
      people.push({ name, page, errors, Attendee, call: (hook, ...args) => page.evaluate((h, a) => window.carillon[h](...a), hook, args) });
    }
    await Promise.all(people.map(({ page, Attendee }) => page.evaluate(
      (m, a) => window.carillon.join({ Meeting: m }, { Attendee: a }), Meeting, Attendee)));
    for (const { page } of people) {
      await waitFor(page, () => JSON.stringify(window.carillon.roster()) === '["José","Zoë"]');
    }
    for (const listener of people) {
      const { heard, first, second } = await hears(listener);
      assert.ok(heard, `${listener.name} hears the other (energy ${first} -> ${second})`);
    }
    await people[0].call('sendChat', 'über TLS, ¿sí?');
    await waitFor(people[1].page, () => window.carillon.chats().some((m) => m.from === 'José' && m.text === 'über TLS, ¿sí?'));
    for (const { name, errors } of people) assert.deepEqual(errors, [], `${name}'s page has no errors`);
  } finally {
    await Promise.all(people.map(({ page }) => page.close().catch(() => {})));
  }
}

test('carillon serve --tls-cert: the demo page, API and signaling over https:// and wss://', { timeout: 90000 }, async () => {
  const { server, url } = await startServer({ name: 'tls', credentials, args: ['--tls-cert', cert, '--tls-key', key] });
  try {
    assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/);
    await twoJoinOver(url, trusting(url));
  } finally {
    server.kill('SIGTERM');
  }
});

test('behind nginx terminating TLS, as the recipe in docs/network.md says', { timeout: 90000 }, async () => {
  const proxyPort = await freeTcpPort();
  const proxyUrl = `https://127.0.0.1:${proxyPort}`;
  const { server, address: upstream } = await startServer({ name: 'proxied', credentials, args: ['--public-url', proxyUrl] });
  // The server block of docs/network.md, with this run's ports, certificate and scratch paths.
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, `
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log;
events {}
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  server {
    listen 127.0.0.1:${proxyPort} ssl;
    ssl_certificate ${cert};
    ssl_certificate_key ${key};
    location / {
      proxy_pass http://${upstream};
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 1h;
    }
  }
}
`);
  const proxy = spawn(nginx, ['-c', conf, '-g', 'daemon off;'], { stdio: 'inherit' });
  try {
    await listening(proxyPort);
    // The API through the proxy too: the SigV4 signature covers the Host header, which nginx
    // passes on unchanged.
    await twoJoinOver(proxyUrl, trusting(proxyUrl));
  } finally {
    proxy.kill('SIGTERM');
    server.kill('SIGTERM');
  }
});
