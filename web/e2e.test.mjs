// End-to-end: the real amazon-chime-sdk-js in Debian's headless Chromium joins Carillon meetings
// with JoinTokens from the official JS v3 SDK. Two attendees start, see each other, hear each
// other; DeleteAttendee removes one, and its old token no longer admits it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import {
  BadRequestException,
  CreateAttendeeCommand,
  CreateMeetingCommand,
  DeleteAttendeeCommand,
  DeleteMeetingCommand,
  GetAttendeeCommand,
  GetMeetingCommand,
  ListAttendeesCommand,
  NotFoundException,
} from '@aws-sdk/client-chime-sdk-meetings';
import {
  launchBrowser, openDemo, openPage as openDemoPage, sleep, startServer, waitFor,
} from './harness.mjs';

const credentials = { accessKeyId: 'AKIDBROWSERTEST', secretAccessKey: 'browser-test-secret' };
const accountEnv = { CARILLON_ACCOUNT_ID: '777788889999' };

let server;
let url;
let adminUrl;
let browser;
let client;

// A webhook receiver for the meeting events, checking each body's HMAC signature.
const webhookSecret = 'browser-webhook-secret';
const events = [];
const receiver = createServer((request, response) => {
  let body = '';
  request.on('data', (chunk) => { body += chunk; });
  request.on('end', () => {
    const expected = `sha256=${createHmac('sha256', webhookSecret).update(body).digest('hex')}`;
    assert.equal(request.headers['x-carillon-signature'], expected, 'the webhook body is signed');
    events.push(JSON.parse(body));
    response.writeHead(204).end();
  });
});
const eventTypes = (meetingId) => events
  .filter((e) => e.detail.meetingId === meetingId)
  .map((e) => `${e.detail.eventType.replace('chime:', '')}${e.detail.externalUserId ? ` ${e.detail.externalUserId}` : ''}`);

before(async () => {
  await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const webhook = `http://127.0.0.1:${receiver.address().port}/events`;
  ({ server, url, adminUrl, client } = await startServer({
    name: 'e2e',
    credentials,
    admin: true,
    args: ['--webhook', webhook, '--webhook-secret', webhookSecret],
    env: accountEnv,
  }));
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
  receiver.close();
});

const openPage = () => openDemoPage(browser, url);

test('two browsers join, see and hear each other, and DeleteAttendee locks one out', async () => {
  const { Meeting } = await client.send(new CreateMeetingCommand({ MediaRegion: 'us-east-1', ExternalMeetingId: 'browser-e2e' }));
  const { Attendee: alice } = await client.send(new CreateAttendeeCommand({ MeetingId: Meeting.MeetingId, ExternalUserId: 'alice' }));
  const { Attendee: bob } = await client.send(new CreateAttendeeCommand({ MeetingId: Meeting.MeetingId, ExternalUserId: 'bob' }));

  const [alicePage, bobPage] = [await openPage(), await openPage()];
  // What the SDK's event reporter posts to EventIngestionUrl, and whether it complains.
  const ingestion = [];
  for (const page of [alicePage, bobPage]) {
    page.on('response', (response) => {
      if (response.url().includes('/v1/client-events')) ingestion.push(`${response.status()} ${response.url()}`);
    });
    page.on('console', (message) => {
      if (/important event/i.test(message.text())) ingestion.push(`console: ${message.text()}`);
    });
  }
  const join = (page, attendee) => page.evaluate((m, a) => window.carillon.join({ Meeting: m }, { Attendee: a }), Meeting, attendee);
  const [aliceJoin, bobJoin] = await Promise.all([join(alicePage, alice), join(bobPage, bob)]);
  console.log(`join latency (start() to audioVideoDidStart): alice ${aliceJoin.joinMs.toFixed(0)} ms, bob ${bobJoin.joinMs.toFixed(0)} ms`);

  for (const page of [alicePage, bobPage]) {
    await waitFor(page, () => JSON.stringify(window.carillon.roster()) === '["alice","bob"]');
  }

  // Each fake microphone plays a tone: the other browser's inbound audio energy must rise.
  for (const [name, page] of [['alice', alicePage], ['bob', bobPage]]) {
    const first = await page.evaluate(() => window.carillon.audioEnergy());
    await sleep(2000);
    const second = await page.evaluate(() => window.carillon.audioEnergy());
    console.log(`${name} inbound audio energy: ${first.toFixed(4)} -> ${second.toFixed(4)}`);
    assert.ok(second > first, `${name} hears the other attendee (energy ${first} -> ${second})`);
  }

  // Volume indicators (AUDIO_METADATA) show the other attendee speaking.
  await waitFor(bobPage, () => window.carillon.peakVolume('alice') > 0);
  await waitFor(alicePage, () => window.carillon.peakVolume('bob') > 0);

  // Realtime data messages reach the other browser, stamped with their sender.
  await alicePage.evaluate(() => window.carillon.sendChat('hello bob'));
  await waitFor(bobPage, () => window.carillon.chats().some((m) => m.from === 'alice' && m.text === 'hello bob'));

  await client.send(new DeleteAttendeeCommand({ MeetingId: Meeting.MeetingId, AttendeeId: bob.AttendeeId }));
  await waitFor(bobPage, () => window.carillon.status() === 'stopped: AudioAttendeeRemoved');
  await waitFor(alicePage, () => JSON.stringify(window.carillon.roster()) === '["alice"]');

  const rejoin = await openPage();
  const refused = await rejoin.evaluate(
    (m, a) => window.carillon.join({ Meeting: m }, { Attendee: a }).then(() => 'joined', (e) => e.message),
    Meeting,
    bob,
  );
  assert.equal(refused, 'stopped: SignalingBadRequest', 'the deleted attendee cannot rejoin with its old JoinToken');

  // The whole meeting, as its webhook saw it: in order, ending with alice still connected.
  await client.send(new DeleteMeetingCommand({ MeetingId: Meeting.MeetingId }));
  // The SDK sends its last batch (with meetingEnded) after the meeting ended, with a JoinToken
  // that names no attendee any more: accepted for five minutes after the session ended. Counted
  // from the delete, not from when the page shows the end: the batch can come before that.
  const batches = ingestion.length;
  await waitFor(alicePage, () => window.carillon.status() === 'stopped: MeetingEnded');
  const flushed = Date.now() + 10000;
  while (ingestion.length === batches && Date.now() < flushed) await sleep(100);
  console.log(`client events posted: ${ingestion.join(', ')}`);
  assert.ok(ingestion.length > batches, 'a batch after the meeting ended');
  assert.deepEqual(ingestion.filter((line) => !line.startsWith('200 ')), [], 'every batch accepted, no SDK complaint');
  const deadline = Date.now() + 10000;
  while (!eventTypes(Meeting.MeetingId).includes('MeetingEnded') && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const seen = eventTypes(Meeting.MeetingId);
  console.log(`webhook events: ${seen.join(', ')}`);
  const expectedOrder = ['MeetingStarted', 'AttendeeAdded alice', 'AttendeeAdded bob', 'AttendeeDeleted bob', 'AttendeeLeft alice', 'MeetingEnded'];
  assert.deepEqual(seen.filter((e) => expectedOrder.includes(e)), expectedOrder);
  for (const name of ['alice', 'bob']) {
    const authorized = seen.indexOf(`AttendeeAuthorized ${name}`);
    const joined = seen.indexOf(`AttendeeJoined ${name}`);
    assert.ok(authorized > seen.indexOf(`AttendeeAdded ${name}`) && joined === authorized + 1, `${name} was authorized, then joined: ${seen}`);
  }
});

test('the JS v3 SDK surfaces modelled exception classes', async () => {
  await assert.rejects(client.send(new GetMeetingCommand({ MeetingId: '0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f' })), (error) => {
    assert.ok(error instanceof NotFoundException, error.name);
    assert.equal(error.$metadata.httpStatusCode, 404);
    assert.ok(error.$metadata.requestId);
    return true;
  });
  const { Meeting } = await client.send(new CreateMeetingCommand({ MediaRegion: 'us-east-1', ExternalMeetingId: 'js-errors' }));
  await assert.rejects(client.send(new ListAttendeesCommand({ MeetingId: Meeting.MeetingId, MaxResults: 101 })), (error) => {
    assert.ok(error instanceof BadRequestException, error.name);
    assert.match(error.message, /MaxResults/);
    return true;
  });
});

test('the demo page joins through its own form', async () => {
  const page = await openPage();
  await page.type('#user-name', 'carol');
  await page.click('#join-button');
  await waitFor(page, () => window.carillon.status() === 'started');
  assert.deepEqual(await page.evaluate(() => window.carillon.roster()), ['carol']);
});

test('the admin page shows meetings and presence live, and deletes an attendee', async () => {
  const admin = await browser.newPage();
  await admin.setViewport({ width: 1200, height: 700 });
  await admin.goto(`${adminUrl}/admin`);
  await waitFor(admin, () => document.getElementById('status').textContent === 'live');

  const { Meeting } = await client.send(new CreateMeetingCommand({ MediaRegion: 'eu-central-1', ExternalMeetingId: 'admin-page' }));
  const { Attendee } = await client.send(new CreateAttendeeCommand({ MeetingId: Meeting.MeetingId, ExternalUserId: 'Zoë' }));
  const stateOf = (id) => document.querySelector(`tr[data-attendee="${id}"] .state`)?.textContent;
  // It appears without a reload, pushed by the server-sent events.
  await waitFor(admin, (id) => document.querySelector(`tr[data-attendee="${id}"] .state`)?.textContent === 'never-joined', Attendee.AttendeeId);

  const joined = await openPage();
  await joined.evaluate((m, a) => window.carillon.join({ Meeting: m }, { Attendee: a }), Meeting, Attendee);
  await waitFor(admin, (id) => document.querySelector(`tr[data-attendee="${id}"] .state`)?.textContent === 'connected', Attendee.AttendeeId);
  await waitFor(admin, (id) => document.querySelector(`tr[data-attendee="${id}"]`)?.textContent.includes('audio'), Attendee.AttendeeId);
  // Kept for a person to look at (dist/ exists once scripts/build-demo has run; made here if not).
  mkdirSync('dist', { recursive: true });
  await admin.screenshot({ path: process.env.ADMIN_SCREENSHOT ?? 'dist/admin-page.png' });
  console.log(`admin page: ${await admin.evaluate(stateOf, Attendee.AttendeeId)}`);

  // Delete from the page: the client is removed, and the API no longer knows the attendee.
  // The joining page opened last and is in front; a page in the background gets no animation
  // frames, which puppeteer's click waits for.
  await admin.bringToFront();
  await admin.click(`button[data-delete="${Meeting.MeetingId}/${Attendee.AttendeeId}"]`);
  await waitFor(joined, () => window.carillon.status() === 'stopped: AudioAttendeeRemoved');
  await assert.rejects(
    client.send(new GetAttendeeCommand({ MeetingId: Meeting.MeetingId, AttendeeId: Attendee.AttendeeId })),
    (error) => error instanceof NotFoundException,
  );
});
