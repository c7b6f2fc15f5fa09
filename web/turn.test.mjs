// TURN through the embedded listener, over each transport a network may leave open. With
// turn_credentials in JOIN_ACK the SDK sets iceTransportPolicy 'relay' itself, so a browser's only
// candidates are relay candidates on the listener, and everything it hears and sees has crossed
// it. Three ways:
//  - as configured (`--turn-listen`: UDP and TCP on one port), where browsers pick UDP;
//  - a client whose network blocks UDP, which is left with `turn:…?transport=tcp`;
//  - a client whose network lets only TLS out, left with `turns:` (`--turn-tls-listen`, with the
//    HTTPS certificate, self-signed here: Chromium `--ignore-certificate-errors`).
// In each, two Chromium pages join, hear each other, one shares content the other sees, a data
// message crosses, and both leave cleanly with no error in their consoles. Loopback candidates
// must be allowed for a TURN server on 127.0.0.1.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateAttendeeCommand, CreateMeetingCommand } from '@aws-sdk/client-chime-sdk-meetings';
import {
  NO_BACKGROUND_THROTTLING, TEARDOWN_WARNINGS, hears, keepIceServers, launchBrowser, openDemo, recordConnections,
  selfSignedCertificate, showsColour, startServer, waitFor,
} from './harness.mjs';

const credentials = { accessKeyId: 'AKIDTURNTEST', secretAccessKey: 'turn-test-secret' };
const dir = mkdtempSync(join(tmpdir(), 'carillon-turn-'));
const { cert, key } = selfSignedCertificate(dir);
let browser;

before(async () => {
  browser = await launchBrowser([
    '--allow-loopback-in-peer-connection',
    '--ignore-certificate-errors',
    ...NO_BACKGROUND_THROTTLING,
  ]);
});

after(async () => {
  await browser?.close();
});

/** The console lines that are warnings, errors or failed requests. */
const complaints = (lines) => lines.filter((line) => /^(error|warn(ing)?|pageerror):|^http /.test(line)
  || /ClosedUnexpectedly|no ice candidates/i.test(line));

/** The ICE a page's connected peer ended up with: policy, TURN URIs, candidate types, and the
 * selected local candidate's type and relay protocol. */
function iceOf(page) {
  return waitFor(page, async () => {
    const peer = window.carillonPeers.find((p) => p.connectionState === 'connected');
    if (!peer) return false;
    const stats = await peer.getStats();
    const locals = [...stats.values()].filter((s) => s.type === 'local-candidate');
    const pair = [...stats.values()].find((s) => s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated);
    if (!pair) return false;
    const config = peer.getConfiguration();
    const selected = stats.get(pair.localCandidateId);
    return {
      policy: config.iceTransportPolicy,
      urls: config.iceServers.flatMap((server) => [].concat(server.urls)),
      localTypes: [...new Set(locals.map((c) => c.candidateType))],
      selected: selected?.candidateType,
      relayProtocol: selected?.relayProtocol,
    };
  }).then((handle) => handle.jsonValue());
}

/**
 * Two pages join a meeting on a server started with `args`, keeping only the TURN URIs that match
 * `keep`; each must end on a relay candidate reached over `relayProtocol` and, as far as the
 * page can see, with exactly the URIs `expectUris` describes.
 */
async function meetThroughTurn({ name, args, ca, keep, relayProtocol, expectUris }) {
  const { server, url, client } = await startServer({ name, credentials, args, ca });
  const people = [];
  try {
    const { Meeting } = await client.send(new CreateMeetingCommand({ MediaRegion: 'us-east-1', ExternalMeetingId: `turn-${name}` }));
    for (const who of ['José', 'Zoë']) {
      const page = await browser.newPage();
      const consoleLines = [];
      page.on('console', (message) => consoleLines.push(`${message.type()}: ${message.text()}`));
      page.on('response', (response) => {
        if (response.status() >= 400) consoleLines.push(`http ${response.status()} ${response.request().method()} ${response.url()}`);
      });
      page.on('pageerror', (error) => consoleLines.push(`pageerror: ${error.message}`));
      await recordConnections(page);
      if (keep) await keepIceServers(page, keep);
      await openDemo(page, url);
      const { Attendee } = await client.send(new CreateAttendeeCommand({ MeetingId: Meeting.MeetingId, ExternalUserId: who }));
      people.push({
        name: who, page, consoleLines, Attendee,
        call: (hook, ...hookArgs) => page.evaluate((h, a) => window.carillon[h](...a), hook, hookArgs),
      });
    }
    await Promise.all(people.map(({ page, Attendee }) => page.evaluate(
      (m, a) => window.carillon.join({ Meeting: m }, { Attendee: a }), Meeting, Attendee)));
    for (const person of people) {
      await waitFor(person.page, () => JSON.stringify(window.carillon.roster()) === '["José","Zoë"]');
      const ice = await iceOf(person.page);
      console.log(`${name}: ${person.name} ICE through TURN: ${JSON.stringify(ice)}`);
      assert.equal(ice.policy, 'relay');
      expectUris(ice.urls);
      assert.deepEqual(ice.localTypes, ['relay'], 'relay candidates only');
      assert.equal(ice.selected, 'relay');
      assert.equal(ice.relayProtocol, relayProtocol, 'the relay is reached over the transport left open');
    }
    // Audio crossed the listener both ways.
    for (const listener of people) {
      const { heard, first, second } = await hears(listener);
      assert.ok(heard, `${listener.name} hears the other through TURN (energy ${first} -> ${second})`);
    }
    // A content share (its own peer connection and TURN credentials, `<AttendeeId>#content`).
    const [jose, zoe] = people;
    await jose.call('startContentShare');
    await showsColour(zoe, `${jose.Attendee.AttendeeId}#content`, [0, 0, 255], 20000);
    await jose.call('stopContentShare');
    // A data message crosses too.
    await jose.call('sendChat', 'through TURN, ¿sí?');
    await waitFor(zoe.page, (from) => window.carillon.chats().some((m) => m.from === from && m.text === 'through TURN, ¿sí?'), jose.name);
    // Join, audio, content share and a data message: not one warning or error.
    for (const { name: who, consoleLines } of people) {
      assert.deepEqual(complaints(consoleLines), [], `${who}'s console has no warnings or errors before leaving`);
    }
    const beforeLeaving = people.map(({ consoleLines }) => consoleLines.length);
    // A clean leave: LEAVE_ACK, then a 1000 close.
    for (const [index, { name: who, page, consoleLines }] of people.entries()) {
      await page.evaluate(() => window.carillon.leave());
      await waitFor(page, () => window.carillon.status() === 'stopped: Left');
      await waitFor(page, () => window.carillonSocketCloses.length > 0);
      const closes = await page.evaluate(() => window.carillonSocketCloses);
      assert.ok(closes.every((close) => close.code === 1000 && close.wasClean), `${who}'s signaling sockets closed cleanly: ${JSON.stringify(closes)}`);
      const leaving = complaints(consoleLines.slice(beforeLeaving[index]))
        .filter((line) => !TEARDOWN_WARNINGS.some((known) => known.test(line)));
      assert.deepEqual(leaving, [], `${who}'s console has no warnings or errors while leaving`);
    }
  } finally {
    await Promise.all(people.map(({ page }) => page.close().catch(() => {})));
    server.kill('SIGTERM');
  }
}

test('as configured: UDP and TCP offered on one port, and browsers relay over UDP', { timeout: 120000 }, async () => {
  await meetThroughTurn({
    name: 'udp',
    args: ['--turn-listen', '127.0.0.1:0'],
    relayProtocol: 'udp',
    expectUris: (urls) => {
      assert.equal(urls.length, 2, urls.join());
      assert.match(urls[0], /^turn:127\.0\.0\.1:\d+\?transport=udp$/);
      assert.equal(urls[1], urls[0].replace('transport=udp', 'transport=tcp'), 'TCP on the same port');
    },
  });
});

test('a network that blocks UDP: relayed over TURN/TCP', { timeout: 120000 }, async () => {
  await meetThroughTurn({
    name: 'tcp',
    args: ['--turn-listen', '127.0.0.1:0'],
    keep: /^turn:.*\?transport=tcp$/,
    relayProtocol: 'tcp',
    expectUris: (urls) => {
      assert.equal(urls.length, 1, urls.join());
      assert.match(urls[0], /^turn:127\.0\.0\.1:\d+\?transport=tcp$/);
    },
  });
});

test('a network that lets only TLS out: relayed over TURN/TLS (turns:) with the HTTPS certificate', { timeout: 120000 }, async () => {
  await meetThroughTurn({
    name: 'tls',
    args: ['--turn-listen', '127.0.0.1:0', '--turn-tls-listen', '127.0.0.1:0', '--tls-cert', cert, '--tls-key', key],
    ca: readFileSync(cert),
    keep: /^turns:/,
    relayProtocol: 'tls',
    expectUris: (urls) => {
      assert.equal(urls.length, 1, urls.join());
      assert.match(urls[0], /^turns:127\.0\.0\.1:\d+\?transport=tcp$/);
    },
  });
});
