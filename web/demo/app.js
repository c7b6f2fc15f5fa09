// The demo page: joins a Carillon meeting with amazon-chime-sdk-js, shows the roster, camera and
// screen-share tiles and a chat, and lets the person mute, pick devices and leave. `window.carillon`
// is also what the browser tests (e2e.test.mjs, mix.test.mjs, video.test.mjs) drive.
import {
  ConsoleLogger,
  DefaultDeviceController,
  DefaultMeetingSession,
  DefaultModality,
  LogLevel,
  MeetingSessionConfiguration,
  MeetingSessionStatusCode,
} from 'amazon-chime-sdk-js';

const state = {
  session: null,
  attendeeId: null,
  externalUserId: null,
  // The people present (attendee id → name); content shares are not people, see `sharers`.
  roster: new Map(),
  // The attendee ids of the people whose screen share is present in the meeting.
  sharers: new Set(),
  volumes: new Map(),
  peakVolumes: new Map(),
  status: 'idle',
  muted: false,
  cameraOn: false,
  // Between asking for a share and its contentShareDidStop: the share button then stops it.
  sharing: false,
  contentShareEvents: [],
  audioInputId: null,
  videoInputId: null,
  messages: [],
  // tileId → { tile: the last VideoTileState, figure, video, caption }.
  tiles: new Map(),
  // The WebRTC stats of the last client metric report (the SDK sends one every second).
  stats: null,
  // How often the SDK has started reconnecting (after its signaling or media connection broke).
  reconnects: 0,
};

const $ = (id) => document.getElementById(id);

function describe(status) {
  if (status === 'idle') return 'Not connected.';
  if (status === 'connecting') return 'Connecting…';
  if (status === 'started') return 'Connected: the others in the meeting hear you, and you hear them.';
  return status.charAt(0).toUpperCase() + status.slice(1);
}

/** Shows a failed action (a camera that cannot start, a refused screen capture) without touching the status. */
function notify(error) {
  $('notice').textContent = error ? `Could not do that: ${error.message}` : '';
}

function render() {
  const started = state.status === 'started';
  $('status').textContent = describe(state.status);
  $('join-button').disabled = state.status === 'connecting' || started;
  $('controls').hidden = !started;
  $('mute-button').textContent = state.muted ? 'Unmute' : 'Mute';
  $('camera-button').textContent = state.cameraOn ? 'Turn camera off' : 'Turn camera on';
  $('share-button').textContent = state.sharing ? 'Stop sharing' : 'Share screen';
  $('chat-section').hidden = !started && state.messages.length === 0;
  $('chat-send').disabled = !started;
  $('video-section').hidden = [...state.tiles.values()].every(({ figure }) => figure.hidden);
  const list = $('roster');
  list.replaceChildren(
    ...[...state.roster].map(([id, name]) => {
      const item = document.createElement('li');
      const notes = [];
      if ((state.volumes.get(id) ?? 0) > 0.1) notes.push('speaking');
      if (state.sharers.has(id)) notes.push('sharing screen');
      item.textContent = notes.length ? `${name} (${notes.join(', ')})` : name;
      if (id === state.attendeeId) item.className = 'me';
      return item;
    }),
  );
}

/** A person's name from their attendee id (or their content share's), for captions. */
function nameOf(attendeeId, externalUserId) {
  const base = new DefaultModality(attendeeId).base();
  return state.roster.get(base) ?? externalUserId?.split(DefaultModality.MODALITY_SEPARATOR)[0] ?? base;
}

function tileCaption(tile) {
  if (tile.localTile) return 'You (camera)';
  if (!tile.boundAttendeeId) return 'Video connecting…';
  const name = nameOf(tile.boundAttendeeId, tile.boundExternalUserId);
  if (!tile.isContent) return name;
  // The SDK shows a sharer their own share too, as a tile of their meeting session.
  const mine = new DefaultModality(tile.boundAttendeeId).base() === state.attendeeId;
  return mine ? 'Your screen share' : `${name}'s screen share`;
}

/** videoTileDidUpdate: gives each tile one <video> element, bound once, and keeps its state. */
function showTile(tile) {
  let entry = state.tiles.get(tile.tileId);
  if (!entry) {
    const video = document.createElement('video');
    video.muted = true;
    video.playsInline = true;
    const caption = document.createElement('figcaption');
    const figure = document.createElement('figure');
    figure.append(video, caption);
    $('videos').append(figure);
    entry = { video, caption, figure };
    state.tiles.set(tile.tileId, entry);
  }
  entry.tile = tile;
  entry.caption.textContent = tileCaption(tile);
  // A tile learns it is a share only once its stream is bound: the style, not the place, says so.
  entry.figure.className = tile.isContent ? 'content' : '';
  // stopLocalVideoTile keeps the local tile, without a stream, for the next start.
  entry.figure.hidden = tile.localTile && !tile.boundVideoStream;
  // Binding again triggers another videoTileDidUpdate; only bind when the element is new to the tile.
  if (tile.boundVideoElement !== entry.video) state.session.audioVideo.bindVideoElement(tile.tileId, entry.video);
  render();
}

function removeTile(tileId) {
  state.tiles.get(tileId)?.figure.remove();
  state.tiles.delete(tileId);
  render();
}

/** The tile entry showing `attendeeId` (a person's camera, or with `#content` their share). */
function tileOf(attendeeId) {
  return [...state.tiles.values()].find(({ tile }) => tile.boundAttendeeId === attendeeId);
}

function showMessage(from, text) {
  state.messages.push({ from, text });
  const item = document.createElement('li');
  const sender = document.createElement('strong');
  sender.textContent = `${from}: `;
  item.append(sender, text);
  $('chat-list').append(item);
  render();
}

/** Fills a device <select>, keeping the chosen device selected. */
function fillDevices(select, devices, chosenId, kind) {
  select.replaceChildren(
    ...devices.map((device, i) => new Option(device.label || `${kind} ${i + 1}`, device.deviceId, false, device.deviceId === chosenId)),
  );
}

async function listDevices() {
  const av = state.session.audioVideo;
  const [audioInputs, videoInputs] = await Promise.all([av.listAudioInputDevices(), av.listVideoInputDevices()]);
  state.videoInputId ??= videoInputs[0]?.deviceId ?? null;
  fillDevices($('audio-input'), audioInputs, state.audioInputId, 'Microphone');
  fillDevices($('video-input'), videoInputs, state.videoInputId, 'Camera');
}

/**
 * Joins with a CreateMeeting and a CreateAttendee response; resolves at audioVideoDidStart.
 * `simulcast: true` sends the camera in three layers (off by default in the SDK).
 */
async function join(meeting, attendee, { simulcast = false } = {}) {
  const logger = new ConsoleLogger('carillon', LogLevel.WARN);
  const devices = new DefaultDeviceController(logger);
  const configuration = new MeetingSessionConfiguration(meeting, attendee);
  if (simulcast) configuration.enableSimulcastForUnifiedPlanChromiumBasedBrowsers = true;
  const session = new DefaultMeetingSession(configuration, logger, devices);
  const av = session.audioVideo;
  state.session = session;
  state.attendeeId = (attendee.Attendee ?? attendee).AttendeeId;
  state.externalUserId = (attendee.Attendee ?? attendee).ExternalUserId;
  state.status = 'connecting';
  render();
  av.realtimeSubscribeToAttendeeIdPresence((attendeeId, present, externalUserId) => {
    const modality = new DefaultModality(attendeeId);
    if (modality.hasModality(DefaultModality.MODALITY_CONTENT)) {
      if (present) state.sharers.add(modality.base());
      else state.sharers.delete(modality.base());
    } else if (present) {
      const name = externalUserId ?? attendeeId;
      if (!state.roster.has(attendeeId)) {
        av.realtimeSubscribeToVolumeIndicator(attendeeId, (id, volume) => {
          if (volume === null) return;
          state.volumes.set(id, volume);
          state.peakVolumes.set(name, Math.max(volume, state.peakVolumes.get(name) ?? 0));
          render();
        });
      }
      state.roster.set(attendeeId, name);
    } else {
      state.roster.delete(attendeeId);
      state.volumes.delete(attendeeId);
    }
    render();
  });
  av.realtimeSubscribeToReceiveDataMessage('chat', (message) => showMessage(message.senderExternalUserId, message.text()));
  av.addContentShareObserver({
    contentShareDidStart: () => {
      state.contentShareEvents.push('started');
    },
    contentShareDidStop: () => {
      state.contentShareEvents.push('stopped');
      state.sharing = false;
      render();
    },
  });
  av.addDeviceChangeObserver({ audioInputsChanged: listDevices, videoInputsChanged: listDevices });
  await av.bindAudioElement($('meeting-audio'));
  const inputs = await av.listAudioInputDevices();
  state.audioInputId = inputs.length ? inputs[0].deviceId : null;
  await av.startAudioInput(state.audioInputId);
  // After startAudioInput: with the microphone permission granted, devices have labels.
  await listDevices();
  const started = performance.now();
  return new Promise((resolve, reject) => {
    av.addObserver({
      audioVideoDidStartConnecting: (reconnecting) => {
        if (!reconnecting) return;
        state.reconnects += 1;
        state.status = 'reconnecting';
        render();
      },
      audioVideoDidStart: () => {
        state.status = 'started';
        render();
        resolve({ joinMs: performance.now() - started });
      },
      audioVideoDidStop: (status) => {
        state.status = `stopped: ${MeetingSessionStatusCode[status.statusCode()]}`;
        state.cameraOn = false;
        render();
        // The SDK leaves the devices open after a meeting ends: release them.
        av.stopVideoInput();
        av.stopAudioInput();
        reject(new Error(state.status));
      },
      videoTileDidUpdate: showTile,
      videoTileWasRemoved: removeTile,
      // The stats the SDK reads anyway: getRTCPeerConnectionStats() would read them again
      // (the SDK warns that it is deprecated for that reason).
      metricsDidReceive: (report) => {
        state.stats = report.getRTCStatsReport();
      },
    });
    av.start();
  });
}

/** The receiver's cumulative inbound audio energy (WebRTC stats), to tell sound from silence. */
async function audioEnergy() {
  const report = state.stats;
  let energy = 0;
  report?.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') energy += s.totalAudioEnergy ?? 0;
  });
  return energy;
}

/**
 * Frames decoded so far (WebRTC stats) of all received video, or with `attendeeId` of the video
 * that attendee's tile shows (0 without such a tile).
 */
async function videoFramesDecoded(attendeeId) {
  const tracks = attendeeId === undefined
    ? null
    : (tileOf(attendeeId)?.tile.boundVideoStream?.getVideoTracks() ?? []).map((track) => track.id);
  const report = state.stats;
  let frames = 0;
  report?.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video' && (!tracks || tracks.includes(s.trackIdentifier))) {
      frames += s.framesDecoded ?? 0;
    }
  });
  return frames;
}

/** What this page sends of its camera: one entry per encoding (simulcast layer), from WebRTC stats. */
async function videoSendLayers() {
  const report = state.stats;
  const layers = [];
  report?.forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      layers.push({ rid: s.rid ?? null, width: s.frameWidth ?? 0, height: s.frameHeight ?? 0, framesEncoded: s.framesEncoded ?? 0 });
    }
  });
  return layers;
}

function roster() {
  return [...state.roster.values()].sort();
}

function status() {
  return state.status;
}

/** How often the session has started reconnecting so far. */
function reconnects() {
  return state.reconnects;
}

/** Sends a realtime data message on the `chat` topic, and shows it here (the sender gets no copy). */
function sendChat(text) {
  state.session.audioVideo.realtimeSendDataMessage('chat', text);
  showMessage(state.externalUserId ?? 'me', text);
}

/** The chat so far, sent and received, as {from, text}. */
function chats() {
  return state.messages;
}

/** The loudest volume indicator (0..1) seen so far for an attendee, by external user id. */
function peakVolume(name) {
  return state.peakVolumes.get(name) ?? 0;
}

/** Starts the camera: from `stream` if given, else from the chosen video input (by default the first). */
async function startCamera(stream = null) {
  const av = state.session.audioVideo;
  await av.startVideoInput(stream ?? state.videoInputId);
  av.startLocalVideoTile();
  state.cameraOn = true;
  render();
}

async function stopCamera() {
  const av = state.session.audioVideo;
  av.stopLocalVideoTile();
  state.cameraOn = false;
  render();
  await av.stopVideoInput();
}

/**
 * A canvas stream of one solid colour, so a receiver can tell whose frames it shows. A small
 * square moves along the top edge: Chrome sends no frames for a canvas that does not change.
 * The drawing is driven by a timer, not requestAnimationFrame, which background pages do not
 * get; it ends when the track does (the SDK stops the tracks it is done with).
 */
function colourStream([r, g, b], fps) {
  const canvas = document.createElement('canvas');
  // Large enough that Chrome sends every simulcast layer (it drops layers for small sources).
  canvas.width = 960;
  canvas.height = 540;
  const context = canvas.getContext('2d');
  const stream = canvas.captureStream(fps);
  const [track] = stream.getVideoTracks();
  let x = 0;
  const timer = setInterval(() => {
    if (track.readyState === 'ended') {
      clearInterval(timer);
      return;
    }
    context.fillStyle = `rgb(${r}, ${g}, ${b})`;
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.fillStyle = 'white';
    context.fillRect(x, 0, 8, 8);
    x = (x + 4) % canvas.width;
  }, 1000 / fps);
  return stream;
}

/** Test hook: the camera shows a solid colour (0..255 each). */
function colourCamera(r, g, b) {
  return startCamera(colourStream([r, g, b], 15));
}

/** Starts a content share with `start(audioVideo)`; the share button reads "Stop sharing" from now on. */
async function share(start) {
  state.sharing = true;
  render();
  try {
    await start(state.session.audioVideo);
  } catch (error) {
    state.sharing = false;
    render();
    throw error;
  }
}

/** Test hook: shares `stream`, by default a blue canvas, as this attendee's content. */
function startContentShare(stream = colourStream([0, 0, 255], 5)) {
  return share((av) => av.startContentShare(stream));
}

function stopContentShare() {
  state.session.audioVideo.stopContentShare();
}

function contentShareEvents() {
  return state.contentShareEvents;
}

/** The tiles this page knows, with the size of the frames its <video> shows (0×0 before the first). */
function tiles() {
  return [...state.tiles.values()].map(({ tile, video }) => ({
    tileId: tile.tileId,
    attendeeId: tile.boundAttendeeId,
    externalUserId: tile.boundExternalUserId,
    isContent: tile.isContent,
    active: tile.active,
    localTile: tile.localTile,
    width: video.videoWidth,
    height: video.videoHeight,
  }));
}

/** The [r, g, b] of the centre pixel an attendee's tile shows, or null before it shows a frame. */
function tileColour(attendeeId) {
  const video = tileOf(attendeeId)?.video;
  if (!video || video.videoWidth === 0) return null;
  const canvas = document.createElement('canvas');
  canvas.width = 1;
  canvas.height = 1;
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.drawImage(video, Math.floor(video.videoWidth / 2), Math.floor(video.videoHeight / 2), 1, 1, 0, 0, 1, 1);
  return [...context.getImageData(0, 0, 1, 1).data.slice(0, 3)];
}

async function leave() {
  state.session?.audioVideo.stop();
}

window.carillon = {
  join,
  audioEnergy,
  roster,
  status,
  reconnects,
  leave,
  sendChat,
  chats,
  peakVolume,
  startCamera,
  stopCamera,
  colourCamera,
  startContentShare,
  stopContentShare,
  contentShareEvents,
  tiles,
  tileColour,
  videoFramesDecoded,
  videoSendLayers,
};

/** Runs a button's action, reporting a failure on the page instead of losing it. */
function act(action) {
  return async () => {
    notify(null);
    try {
      await action();
    } catch (error) {
      notify(error);
    }
  };
}

$('join-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('join-button').disabled = true;
  try {
    const response = await fetch('api/join', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ meeting: $('meeting-name').value, name: $('user-name').value }),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.message);
    await join(body, body);
  } catch (error) {
    state.status = `error: ${error.message}`;
    render();
    $('join-button').disabled = false;
  }
});
$('mute-button').addEventListener('click', () => {
  const av = state.session.audioVideo;
  state.muted = !state.muted;
  if (state.muted) av.realtimeMuteLocalAudio();
  else av.realtimeUnmuteLocalAudio();
  render();
});
$('camera-button').addEventListener('click', act(() => (state.cameraOn ? stopCamera() : startCamera())));
$('share-button').addEventListener('click', act(() => (state.sharing
  ? stopContentShare()
  : share((av) => av.startContentShareFromScreenCapture()))));
$('audio-input').addEventListener('change', act(async () => {
  state.audioInputId = $('audio-input').value;
  await state.session.audioVideo.startAudioInput(state.audioInputId);
}));
$('video-input').addEventListener('change', act(async () => {
  state.videoInputId = $('video-input').value;
  if (state.cameraOn) await state.session.audioVideo.startVideoInput(state.videoInputId);
}));
$('chat-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('chat-text');
  sendChat(input.value);
  input.value = '';
});
$('leave-button').addEventListener('click', leave);
