// Camera video and content share through Carillon's SFU, with the real amazon-chime-sdk-js in
// headless Chromium. Each test joins pages of one browser to a meeting of its own, publishes from
// some of them and checks what the others show: the tile the SDK reports, its frames decoding,
// and the colour its publisher painted (so the frames are that publisher's, not anyone else's).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  CreateAttendeeCommand,
  CreateMeetingCommand,
  DeleteAttendeeCommand,
  DeleteMeetingCommand,
} from '@aws-sdk/client-chime-sdk-meetings';
import {
  NO_BACKGROUND_THROTTLING, decodes, launchBrowser, openDemo, remoteTile, showsColour, sleep, startServer, tileGone, until,
} from './harness.mjs';

const credentials = { accessKeyId: 'AKIDVIDEOTEST', secretAccessKey: 'video-test-secret' };

const RED = [255, 0, 0];
const GREEN = [0, 255, 0];
const BLUE = [0, 0, 255];
// Each person's camera paints one colour, so a viewer can tell whose frames a tile shows.
const CAMERA_COLOURS = { alice: RED, bob: GREEN, carol: BLUE };

let server;
let url;
let client;
let browser;

before(async () => {
  ({ server, url, client } = await startServer({ name: 'video', credentials }));
  browser = await launchBrowser([
    ...NO_BACKGROUND_THROTTLING,
  ]);
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
});

/**
 * Runs `body` with one page per name in a new meeting, and tears everything down after. Each
 * person is {name, attendee, page, call(hook, ...args), join()}; all join first, except those
 * named in `late`, which the body joins itself. A page error fails the test; on failure every
 * page's tiles, stats and last console lines are printed.
 */
async function withMeeting(names, { simulcast = false, late = [] }, body) {
  const { Meeting } = await client.send(new CreateMeetingCommand({ MediaRegion: 'us-east-1', ExternalMeetingId: `video-${names.join('-')}` }));
  const people = [];
  try {
    for (const name of names) {
      const { Attendee } = await client.send(new CreateAttendeeCommand({ MeetingId: Meeting.MeetingId, ExternalUserId: name }));
      const page = await browser.newPage();
      const person = { name, attendee: Attendee, page, console: [], errors: [] };
      person.call = (hook, ...args) => page.evaluate((h, a) => window.carillon[h](...a), hook, args);
      person.join = () => page.evaluate(
        (m, a, o) => window.carillon.join({ Meeting: m }, { Attendee: a }, o),
        Meeting,
        Attendee,
        { simulcast },
      );
      page.on('console', (message) => person.console.push(`${message.type()}: ${message.text()}`));
      page.on('pageerror', (error) => person.errors.push(error.message));
      await openDemo(page, url);
      people.push(person);
    }
    const first = people.filter(({ name }) => !late.includes(name));
    await Promise.all(first.map((person) => person.join()));
    await seeEachOther(first);
    await body(people, Meeting);
    for (const { name, errors } of people) assert.deepEqual(errors, [], `${name}'s page has no errors`);
  } catch (error) {
    for (const person of people) console.log(await diagnostics(person));
    throw error;
  } finally {
    // A page that cannot close (a crashed renderer) must not hide the test's own failure.
    await Promise.all(people.map(({ page }) => page.close().catch(() => {})));
    await client.send(new DeleteMeetingCommand({ MeetingId: Meeting.MeetingId })).catch(() => {});
  }
}

/** Waits until each of `people` has all of them in its roster. */
async function seeEachOther(people) {
  const everyone = JSON.stringify(people.map(({ name }) => name).sort());
  for (const person of people) {
    await until(`${person.name} sees ${everyone}`, () => person.call('roster'), (r) => JSON.stringify(r) === everyone, 10000);
  }
}

async function diagnostics(person) {
  const seen = await person.page.evaluate(async () => ({
    status: window.carillon.status(),
    tiles: window.carillon.tiles(),
    framesDecoded: await window.carillon.videoFramesDecoded().catch((e) => e.message),
    sendLayers: await window.carillon.videoSendLayers().catch((e) => e.message),
    contentShareEvents: window.carillon.contentShareEvents(),
  })).catch((error) => ({ unreadable: error.message }));
  return [
    `--- ${person.name} (${person.attendee.AttendeeId}): ${JSON.stringify(seen)}`,
    ...person.errors.map((e) => `page error: ${e}`),
    ...person.console.slice(-40),
  ].join('\n');
}

/**
 * Every pair of `present` shows each other's camera, in its colour, with frames decoding: more than
 * 10 within 10 s. (Three pages encoding two or three layers each on two cores: Chrome throttles an
 * encoder it finds CPU-limited to a few frames a second, which is not a frozen tile.)
 */
async function allShowEachOther(present) {
  for (const viewer of present) {
    for (const publisher of present.filter((p) => p !== viewer)) {
      const id = publisher.attendee.AttendeeId;
      await remoteTile(viewer, id);
      await showsColour(viewer, id, CAMERA_COLOURS[publisher.name]);
      await decodes(viewer, id, 10, 10000);
    }
  }
}

/** The rids of the simulcast layers `person` is encoding right now (frames encoded within a second). */
async function encodingLayers(person) {
  const first = await person.call('videoSendLayers');
  await sleep(1000);
  const second = await person.call('videoSendLayers');
  return second
    .filter((layer) => layer.framesEncoded > (first.find((f) => f.rid === layer.rid)?.framesEncoded ?? 0))
    .map((layer) => layer.rid);
}

function sendsLayers(person, count) {
  return until(`${person.name} sends ${count} simulcast layer(s)`, () => encodingLayers(person), (rids) => rids.length === count, 15000);
}

test('a camera reaches the other attendee as a live tile, and goes away when stopped', { timeout: 90000 }, () => withMeeting(
  ['alice', 'bob'],
  {},
  async ([alice, bob]) => {
    const aliceId = alice.attendee.AttendeeId;
    await alice.call('colourCamera', ...CAMERA_COLOURS.alice);
    const own = await until('alice shows her own camera', () => alice.call('tiles'), (tiles) => tiles.some((t) => t.localTile && t.active), 5000);
    assert.equal(own.find((t) => t.localTile).attendeeId, aliceId);

    const tile = await remoteTile(bob, aliceId);
    assert.equal(tile.externalUserId, 'alice');
    assert.equal(tile.isContent, false);
    await decodes(bob, aliceId, 10);
    console.log(`bob shows alice in rgb(${await showsColour(bob, aliceId, CAMERA_COLOURS.alice)})`);

    await alice.call('stopCamera');
    await tileGone(bob, aliceId, 3000);
  },
));

test('a content share shows as a content tile, and goes away when stopped', { timeout: 90000 }, () => withMeeting(
  ['alice', 'bob'],
  {},
  async ([alice, bob]) => {
    const contentId = `${alice.attendee.AttendeeId}#content`;
    // The page's default share: a blue canvas.
    await alice.call('startContentShare');
    await until('alice is told her share started', () => alice.call('contentShareEvents'), (e) => e.includes('started'), 10000);

    const tile = await remoteTile(bob, contentId);
    assert.equal(tile.isContent, true);
    // A canvas at 5 frames a second.
    await decodes(bob, contentId, 5);
    await showsColour(bob, contentId, BLUE);
    // The share is not a person: bob's roster names alice once, as sharing.
    assert.deepEqual(await bob.call('roster'), ['alice', 'bob']);
    await until('bob lists alice as sharing', () => bob.page.$eval('#roster', (list) => list.textContent), (text) => /alice \(.*sharing screen\)/.test(text), 5000);

    await alice.call('stopContentShare');
    await until('alice is told her share stopped', () => alice.call('contentShareEvents'), (e) => e.includes('stopped'), 5000);
    await tileGone(bob, contentId, 5000);
  },
));

test('three simulcast cameras started at once: each attendee shows the other two', { timeout: 120000 }, () => withMeeting(
  ['alice', 'bob', 'carol'],
  { simulcast: true },
  async (people) => {
    await Promise.all(people.map((person) => person.call('colourCamera', ...CAMERA_COLOURS[person.name])));
    for (const person of people) await sendsLayers(person, 2);
    await allShowEachOther(people);
  },
));

// The SDK's simulcast policy sends one layer (mid) while at most two people are in the meeting,
// and two (low and hi) with three or four (INDEX num_participants). So a third person joining a
// two-person video call makes both publishers renegotiate their layers, and leaving again undoes
// it: each time every viewer must be moved onto a layer that flows, not left on a frozen one.
test('simulcast cameras keep showing as a third attendee joins and leaves', { timeout: 120000 }, () => withMeeting(
  ['alice', 'bob', 'carol'],
  { simulcast: true, late: ['carol'] },
  async (people) => {
    const [alice, bob, carol] = people;

    await Promise.all([alice, bob].map((person) => person.call('colourCamera', ...CAMERA_COLOURS[person.name])));
    await allShowEachOther([alice, bob]);
    for (const person of [alice, bob]) await sendsLayers(person, 1);

    await carol.join();
    await seeEachOther(people);
    await carol.call('colourCamera', ...CAMERA_COLOURS.carol);
    for (const person of people) await sendsLayers(person, 2);
    await allShowEachOther(people);

    await carol.call('leave');
    for (const person of [alice, bob]) {
      await tileGone(person, carol.attendee.AttendeeId, 5000);
      await sendsLayers(person, 1);
    }
    await allShowEachOther([alice, bob]);
  },
));

test('DeleteAttendee of a publisher removes its tile from the others', { timeout: 90000 }, () => withMeeting(
  ['alice', 'bob'],
  {},
  async ([alice, bob], Meeting) => {
    const aliceId = alice.attendee.AttendeeId;
    await alice.call('colourCamera', ...CAMERA_COLOURS.alice);
    await remoteTile(bob, aliceId);
    await decodes(bob, aliceId, 10);

    await client.send(new DeleteAttendeeCommand({ MeetingId: Meeting.MeetingId, AttendeeId: aliceId }));
    await until('alice is removed', () => alice.call('status'), (s) => s === 'stopped: AudioAttendeeRemoved', 5000);
    await tileGone(bob, aliceId, 3000);
    await until('bob sees alice gone', () => bob.call('roster'), (r) => JSON.stringify(r) === '["bob"]', 5000);
  },
));
