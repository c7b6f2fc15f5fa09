// Injected into every benchmark page before its own scripts (page.evaluateOnNewDocument), after a
// line setting `window.__benchConfig = {proxyPort, rewrite}`:
// - routes media through the page's impairment proxy: with `rewrite`, every remote description's
//   host candidates (the Carillon answer has one, `127.0.0.1 <media port>`) are rewritten to
//   127.0.0.1:<proxyPort>;
// - keeps every RTCPeerConnection the page uses (the SDK's too), and samples their getStats every
//   250 ms into `__bench.samples` (what the runner turns into figures);
// - provides the busy 960x540 canvas camera and the plain-WebRTC helpers of the p2p baseline.
(() => {
  const config = window.__benchConfig ?? {};
  const bench = {
    pcs: new Set(),
    samples: [],
    rewrites: 0,
  };
  window.__bench = bench;

  const rewriteCandidates = (sdp, port) => sdp.replace(
    /^(a=candidate:\S+ \d+ udp \d+ )(\S+) (\d+)( typ host.*)$/gim,
    (_, head, _addr, _port, tail) => `${head}127.0.0.1 ${port}${tail}`,
  );

  const proto = RTCPeerConnection.prototype;
  const setRemote = proto.setRemoteDescription;
  proto.setRemoteDescription = function setRemoteDescription(description, ...rest) {
    bench.pcs.add(this);
    if (config.rewrite && config.proxyPort && description && description.sdp) {
      const sdp = rewriteCandidates(description.sdp, config.proxyPort);
      if (sdp !== description.sdp) bench.rewrites += 1;
      description = { type: description.type, sdp };
    }
    return setRemote.call(this, description, ...rest);
  };
  const setLocal = proto.setLocalDescription;
  proto.setLocalDescription = function setLocalDescription(...args) {
    bench.pcs.add(this);
    return setLocal.apply(this, args);
  };

  /**
   * A camera that costs an encoder real bits: a pre-rendered textured picture drawn at a new offset
   * every frame, a few moving blocks and a frame counter, 960x540 at `fps`. (A solid colour, as
   * the tests use, encodes to a few kbit/s and would never meet a rate cap.) Timer-driven, so a
   * background page keeps sending; stops when its track ends.
   */
  bench.camera = (fps = 15, width = 960, height = 540) => {
    const canvas = document.createElement('canvas');
    canvas.width = width;
    canvas.height = height;
    const context = canvas.getContext('2d');
    // Low-frequency colour noise (a 64x36 random image scaled up smoothly), like a camera's
    // picture of a cluttered room rather than static: encodable at 960x540 near 1 Mbit/s.
    const small = document.createElement('canvas');
    small.width = 80;
    small.height = 48;
    const sctx = small.getContext('2d');
    const image = sctx.createImageData(small.width, small.height);
    for (let i = 0; i < image.data.length; i += 4) {
      image.data[i] = Math.random() * 255;
      image.data[i + 1] = Math.random() * 255;
      image.data[i + 2] = Math.random() * 255;
      image.data[i + 3] = 255;
    }
    sctx.putImageData(image, 0, 0);
    const noise = document.createElement('canvas');
    noise.width = width + 256;
    noise.height = height + 256;
    const nctx = noise.getContext('2d');
    nctx.imageSmoothingEnabled = true;
    nctx.imageSmoothingQuality = 'high';
    nctx.drawImage(small, 0, 0, noise.width, noise.height);
    // Fine detail on top: thin lines, text, as edges in a real picture.
    nctx.strokeStyle = 'rgba(255,255,255,0.5)';
    for (let k = 0; k < 60; k += 1) {
      nctx.beginPath();
      nctx.moveTo(Math.random() * noise.width, Math.random() * noise.height);
      nctx.lineTo(Math.random() * noise.width, Math.random() * noise.height);
      nctx.stroke();
    }
    nctx.fillStyle = 'rgba(0,0,0,0.6)';
    nctx.font = '20px monospace';
    for (let k = 0; k < 40; k += 1) nctx.fillText(Math.random().toString(36).slice(2), Math.random() * noise.width, Math.random() * noise.height);
    const stream = canvas.captureStream(fps);
    const [track] = stream.getVideoTracks();
    let frame = 0;
    const timer = setInterval(() => {
      if (track.readyState === 'ended') {
        clearInterval(timer);
        return;
      }
      frame += 1;
      // A slow wandering pan (sub-pixel, so every frame changes everywhere) and moving blocks.
      const ox = 128 + 120 * Math.sin(frame / 37);
      const oy = 128 + 120 * Math.sin(frame / 53);
      context.drawImage(noise, ox, oy, width, height, 0, 0, width, height);
      for (let k = 0; k < 4; k += 1) {
        context.fillStyle = ['#e33', '#3e3', '#33e', '#ee3'][k];
        const x = (frame * (5 + k * 3) + k * 200) % width;
        context.fillRect(x, 60 + k * 110, 120, 80);
      }
      context.fillStyle = 'white';
      context.font = '48px sans-serif';
      context.fillText(String(frame), 20, height - 30);
    }, 1000 / fps);
    return stream;
  };

  /** One getStats snapshot of all the page's peer connections, reduced to what the bench uses. */
  async function snapshot() {
    const audio = { concealedSamples: 0, silentConcealedSamples: 0, totalSamplesReceived: 0, concealmentEvents: 0,
      packetsLost: 0, packetsReceived: 0, jitterBufferDelay: 0, jitterBufferEmittedCount: 0, streams: 0 };
    const video = { framesDecoded: 0, framesDropped: 0, freezeCount: 0, totalFreezesDuration: 0, pauseCount: 0,
      totalPausesDuration: 0, nackCount: 0, pliCount: 0, packetsLost: 0, packetsReceived: 0, bytesReceived: 0,
      jitterBufferDelay: 0, jitterBufferEmittedCount: 0, frameWidth: 0, frameHeight: 0, streams: 0 };
    const send = [];
    const pairs = [];
    let best = -1;
    for (const pc of bench.pcs) {
      if (pc.connectionState === 'closed') continue;
      let report;
      try {
        report = await pc.getStats();
      } catch {
        continue;
      }
      const byId = new Map();
      report.forEach((s) => byId.set(s.id, s));
      report.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') {
          audio.streams += 1;
          for (const key of ['concealedSamples', 'silentConcealedSamples', 'totalSamplesReceived', 'concealmentEvents',
            'packetsLost', 'packetsReceived', 'jitterBufferDelay', 'jitterBufferEmittedCount']) audio[key] += s[key] ?? 0;
        } else if (s.type === 'inbound-rtp' && s.kind === 'video') {
          video.streams += 1;
          for (const key of ['framesDecoded', 'framesDropped', 'freezeCount', 'totalFreezesDuration', 'pauseCount',
            'totalPausesDuration', 'nackCount', 'pliCount', 'packetsLost', 'packetsReceived', 'bytesReceived',
            'jitterBufferDelay', 'jitterBufferEmittedCount']) video[key] += s[key] ?? 0;
          // The size of the stream that has decoded the most (there is one remote camera).
          if ((s.framesDecoded ?? 0) > best && s.frameWidth) {
            best = s.framesDecoded ?? 0;
            video.frameWidth = s.frameWidth;
            video.frameHeight = s.frameHeight;
          }
        } else if (s.type === 'outbound-rtp' && s.kind === 'video') {
          send.push({ rid: s.rid ?? null, width: s.frameWidth ?? 0, height: s.frameHeight ?? 0, framesEncoded: s.framesEncoded ?? 0,
            bytesSent: s.bytesSent ?? 0, limitation: s.qualityLimitationReason ?? null, active: s.active ?? null });
        } else if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
          const remote = byId.get(s.remoteCandidateId);
          const local = byId.get(s.localCandidateId);
          pairs.push({ remote: remote ? `${remote.address ?? remote.ip}:${remote.port} ${remote.candidateType}` : null,
            local: local ? `${local.address ?? local.ip}:${local.port} ${local.candidateType}` : null,
            rtt: s.currentRoundTripTime ?? null, outgoing: s.availableOutgoingBitrate ?? null,
            incoming: s.availableIncomingBitrate ?? null, bytesReceived: s.bytesReceived ?? 0 });
        }
      });
    }
    return { t: Date.now(), audio, video, send, pairs };
  }
  bench.snapshot = snapshot;

  let sampling = null;
  bench.startSampling = (intervalMs = 250) => {
    if (sampling) return;
    sampling = setInterval(async () => {
      const s = await snapshot();
      // Keep the heavy parts (send layers, pairs) once a second only.
      if (bench.samples.length % 4 !== 0) {
        s.send = undefined;
        s.pairs = undefined;
      }
      bench.samples.push(s);
    }, intervalMs);
  };
  bench.takeSamples = (since = 0) => bench.samples.filter((s) => s.t >= since);

  // ---- p2p baseline helpers (plain RTCPeerConnection, signaling by the runner) ----
  const peers = new Map();
  bench.peers = peers;
  const gathered = (pc) => new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    const check = () => {
      if (pc.iceGatheringState === 'complete') {
        pc.removeEventListener('icegatheringstatechange', check);
        resolve();
      }
    };
    pc.addEventListener('icegatheringstatechange', check);
    setTimeout(resolve, 3000);
  });

  /** Opens the microphone (the fake audio file) and, with `camera`, the busy canvas camera. */
  bench.openMedia = async (camera) => {
    const mic = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    bench.media = new MediaStream([...mic.getAudioTracks(), ...(camera ? bench.camera(15).getVideoTracks() : [])]);
    return bench.media.getTracks().map((t) => t.kind);
  };

  /**
   * Publisher side: a new peer connection `id` sending the microphone and the camera (VP8, one
   * layer at up to `maxKbps`, like the SDK's hi layer). Resolves to the offer after gathering.
   */
  bench.p2pOffer = async (id, maxKbps) => {
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    peers.set(id, pc);
    bench.pcs.add(pc);
    for (const track of bench.media.getTracks()) {
      const transceiver = pc.addTransceiver(track, { direction: 'sendrecv', streams: [bench.media] });
      if (track.kind === 'video') {
        const vp8 = RTCRtpSender.getCapabilities('video').codecs.filter((c) => /vp8|rtx/i.test(c.mimeType));
        transceiver.setCodecPreferences(vp8);
        const params = transceiver.sender.getParameters();
        params.encodings = [{ maxBitrate: maxKbps * 1000, maxFramerate: 15 }];
        await transceiver.sender.setParameters(params).catch(() => {});
      }
    }
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    return pc.localDescription.sdp;
  };

  /** Viewer side: answers `sdp`, sending its microphone back; resolves to the answer after gathering. */
  bench.p2pAnswer = async (id, sdp) => {
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    peers.set(id, pc);
    bench.pcs.add(pc);
    const video = document.createElement('video');
    video.muted = true;
    video.autoplay = true;
    video.playsInline = true;
    document.body.append(video);
    const audio = document.createElement('audio');
    audio.autoplay = true;
    document.body.append(audio);
    pc.ontrack = (event) => {
      const stream = event.streams[0] ?? new MediaStream([event.track]);
      if (event.track.kind === 'video') video.srcObject = stream;
      else audio.srcObject = stream;
      video.play().catch(() => {});
      audio.play().catch(() => {});
    };
    await pc.setRemoteDescription({ type: 'offer', sdp });
    const mic = bench.media?.getAudioTracks()[0];
    const audioTransceiver = pc.getTransceivers().find((t) => t.receiver.track.kind === 'audio');
    if (mic && audioTransceiver) {
      audioTransceiver.direction = 'sendrecv';
      await audioTransceiver.sender.replaceTrack(mic);
    }
    await pc.setLocalDescription(await pc.createAnswer());
    await gathered(pc);
    return pc.localDescription.sdp;
  };

  bench.p2pAccept = async (id, sdp) => {
    await peers.get(id).setRemoteDescription({ type: 'answer', sdp });
  };

  bench.p2pState = (id) => peers.get(id)?.connectionState ?? 'none';
})();
