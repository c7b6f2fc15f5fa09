// The demo page: joins a Carillon meeting with amazon-chime-sdk-js, shows the roster, and lets
// the person mute and leave. `window.carillon` is also what the end-to-end test drives.
import {
  ConsoleLogger,
  DefaultDeviceController,
  DefaultMeetingSession,
  LogLevel,
  MeetingSessionConfiguration,
  MeetingSessionStatusCode,
} from 'amazon-chime-sdk-js';

const state = {
  session: null,
  attendeeId: null,
  roster: new Map(),
  volumes: new Map(),
  peakVolumes: new Map(),
  status: 'idle',
  muted: false,
  messages: [],
};

const $ = (id) => document.getElementById(id);

function describe(status) {
  if (status === 'idle') return 'Not connected.';
  if (status === 'connecting') return 'Connecting…';
  if (status === 'started') return 'Connected: the others in the meeting hear you, and you hear them.';
  return status.charAt(0).toUpperCase() + status.slice(1);
}

function render() {
  $('status').textContent = describe(state.status);
  $('join-button').disabled = state.status === 'connecting' || state.status === 'started';
  $('controls').hidden = state.status !== 'started';
  $('mute-button').textContent = state.muted ? 'Unmute' : 'Mute';
  const list = $('roster');
  list.replaceChildren(
    ...[...state.roster].map(([id, name]) => {
      const item = document.createElement('li');
      const speaking = (state.volumes.get(id) ?? 0) > 0.1;
      item.textContent = speaking ? `${name} (speaking)` : name;
      if (id === state.attendeeId) item.className = 'me';
      return item;
    }),
  );
}

/** Joins with a CreateMeeting and a CreateAttendee response; resolves at audioVideoDidStart. */
async function join(meeting, attendee) {
  const logger = new ConsoleLogger('carillon', LogLevel.WARN);
  const devices = new DefaultDeviceController(logger);
  const session = new DefaultMeetingSession(new MeetingSessionConfiguration(meeting, attendee), logger, devices);
  const av = session.audioVideo;
  state.session = session;
  state.attendeeId = (attendee.Attendee ?? attendee).AttendeeId;
  state.status = 'connecting';
  render();
  av.realtimeSubscribeToAttendeeIdPresence((attendeeId, present, externalUserId) => {
    if (present) {
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
  av.realtimeSubscribeToReceiveDataMessage('chat', (message) => {
    state.messages.push({ from: message.senderExternalUserId, text: message.text() });
  });
  await av.bindAudioElement($('meeting-audio'));
  const inputs = await av.listAudioInputDevices();
  await av.startAudioInput(inputs.length ? inputs[0].deviceId : null);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    av.addObserver({
      audioVideoDidStart: () => {
        state.status = 'started';
        render();
        resolve({ joinMs: performance.now() - started });
      },
      audioVideoDidStop: (status) => {
        state.status = `stopped: ${MeetingSessionStatusCode[status.statusCode()]}`;
        render();
        reject(new Error(state.status));
      },
    });
    av.start();
  });
}

/** The receiver's cumulative inbound audio energy (WebRTC stats), to tell sound from silence. */
async function audioEnergy() {
  const report = await state.session.audioVideo.getRTCPeerConnectionStats();
  let energy = 0;
  report?.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') energy += s.totalAudioEnergy ?? 0;
  });
  return energy;
}

function roster() {
  return [...state.roster.values()].sort();
}

function status() {
  return state.status;
}

/** Sends a realtime data message on the `chat` topic. */
function sendChat(text) {
  state.session.audioVideo.realtimeSendDataMessage('chat', text);
}

function chats() {
  return state.messages;
}

/** The loudest volume indicator (0..1) seen so far for an attendee, by external user id. */
function peakVolume(name) {
  return state.peakVolumes.get(name) ?? 0;
}

async function leave() {
  state.session?.audioVideo.stop();
}

window.carillon = { join, audioEnergy, roster, status, leave, sendChat, chats, peakVolume };

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
$('leave-button').addEventListener('click', leave);
