// The mm web demo: an image and/or a sound (a file, or recorded from the microphone), one
// question, the answer streamed from /v1/chat/completions. Sounds go as OpenAI input_audio parts:
// WAV, MP3 and FLAC files as they are; recordings and other formats the browser decodes are sent
// as 16 kHz mono 16-bit WAV. When the server has a speech model (/health says so), a Speak button
// sends the answer (or any text typed in its box) to /v1/audio/speech and plays the 16-bit PCM as
// it streams in.
const $ = (id) => document.getElementById(id);
const state = {
  dataUrl: null,
  audio: null,
  model: null,
  busy: false,
  recorder: null,
  speech: null,
  speaking: null,
  audioContext: null,
};
const AUDIO_RATE = 16000;

function headers() {
  const key = $('api-key').value.trim();
  return { 'content-type': 'application/json', ...(key && { authorization: `Bearer ${key}` }) };
}

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = !message;
}

function refresh() {
  $('ask').disabled = state.busy || (!state.dataUrl && !state.audio) || !state.model;
}

async function loadModel() {
  try {
    const res = await fetch('/v1/models', { headers: headers() });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error?.message ?? `HTTP ${res.status}`);
    state.model = body.data[0].id;
    $('model').textContent = state.model;
  } catch (e) {
    showError(`Cannot list models: ${e.message}`);
  }
  refresh();
}

/** The input_audio format of a file the server decodes as it is, else null. */
function audioFormat(file) {
  const type = file.type.toLowerCase();
  const ext = file.name.toLowerCase().split('.').pop();
  if (['audio/wav', 'audio/x-wav', 'audio/wave', 'audio/vnd.wave'].includes(type) || ext === 'wav')
    return 'wav';
  if (['audio/mpeg', 'audio/mp3'].includes(type) || ext === 'mp3') return 'mp3';
  if (['audio/flac', 'audio/x-flac'].includes(type) || ext === 'flac') return 'flac';
  return null;
}

function base64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

/** A DataView over a mono 16-bit PCM WAV of `count` samples at `rate`, header written. */
function wavView(count, rate) {
  const out = new DataView(new ArrayBuffer(44 + count * 2));
  const ascii = (at, t) => {
    for (let i = 0; i < t.length; i++) out.setUint8(at + i, t.charCodeAt(i));
  };
  ascii(0, 'RIFF');
  out.setUint32(4, 36 + count * 2, true);
  ascii(8, 'WAVE');
  ascii(12, 'fmt ');
  out.setUint32(16, 16, true);
  out.setUint16(20, 1, true); // PCM
  out.setUint16(22, 1, true); // mono
  out.setUint32(24, rate, true);
  out.setUint32(28, rate * 2, true);
  out.setUint16(32, 2, true);
  out.setUint16(34, 16, true);
  ascii(36, 'data');
  out.setUint32(40, count * 2, true);
  return out;
}

/** Mono 16-bit PCM WAV of `samples` (floats in [-1, 1]) at `rate`. */
function encodeWav(samples, rate) {
  const out = wavView(samples.length, rate);
  for (let i = 0; i < samples.length; i++) {
    const v = Math.max(-1, Math.min(1, samples[i]));
    out.setInt16(44 + i * 2, v < 0 ? v * 0x8000 : v * 0x7fff, true);
  }
  return new Uint8Array(out.buffer);
}

/** Any audio the browser decodes (a recording, OGG, WebM...) as a 16 kHz mono WAV. */
async function toWav(blob) {
  const bytes = await blob.arrayBuffer();
  const ctx = new AudioContext();
  let decoded;
  try {
    decoded = await ctx.decodeAudioData(bytes);
  } finally {
    ctx.close();
  }
  const frames = Math.max(1, Math.ceil(decoded.duration * AUDIO_RATE));
  const offline = new OfflineAudioContext(1, frames, AUDIO_RATE);
  const source = offline.createBufferSource();
  source.buffer = decoded; // a mono destination mixes the channels down
  source.connect(offline.destination);
  source.start();
  const rendered = await offline.startRendering();
  return encodeWav(rendered.getChannelData(0), AUDIO_RATE);
}

function setAudio(audio) {
  state.audio = audio;
  const preview = $('audio-preview');
  if (preview.src) URL.revokeObjectURL(preview.src);
  if (audio) {
    const type = { wav: 'audio/wav', mp3: 'audio/mpeg', flac: 'audio/flac' }[audio.format];
    preview.src = URL.createObjectURL(new Blob([audio.bytes], { type }));
  } else {
    preview.removeAttribute('src');
  }
  preview.hidden = !audio;
  $('audio-clear').hidden = !audio;
  $('audio-name').textContent = audio ? audio.name : '';
  refresh();
}

async function pickAudio(file) {
  try {
    const format = audioFormat(file);
    const bytes = format
      ? new Uint8Array(await file.arrayBuffer())
      : await toWav(file).catch(() => null);
    if (!bytes) return showError(`${file.name}: this browser cannot decode it`);
    setAudio({ name: file.name, format: format ?? 'wav', bytes, data: base64(bytes) });
    showError('');
  } catch (e) {
    showError(`${file.name}: ${e.message}`);
  }
}

async function toggleRecording() {
  const button = $('record');
  if (state.recorder) {
    state.recorder.stop();
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    return showError(`No microphone: ${e.message}`);
  }
  const chunks = [];
  const recorder = new MediaRecorder(stream);
  state.recorder = recorder;
  recorder.ondataavailable = (e) => {
    if (e.data.size > 0) chunks.push(e.data);
  };
  recorder.onstop = async () => {
    for (const t of stream.getTracks()) t.stop();
    state.recorder = null;
    button.setAttribute('aria-pressed', 'false');
    button.textContent = '● Record';
    try {
      const bytes = await toWav(new Blob(chunks, { type: recorder.mimeType }));
      setAudio({ name: 'recording.wav', format: 'wav', bytes, data: base64(bytes) });
      showError('');
    } catch (e) {
      showError(`The recording could not be decoded: ${e.message}`);
    }
  };
  recorder.start();
  button.setAttribute('aria-pressed', 'true');
  button.textContent = '■ Stop';
}

function pick(file) {
  if (!file) return;
  if (file.type.startsWith('audio/') || audioFormat(file)) return pickAudio(file);
  if (!file.type.startsWith('image/'))
    return showError(`${file.name} is neither an image nor a sound`);
  const reader = new FileReader();
  reader.onload = () => {
    state.dataUrl = reader.result;
    $('preview').src = state.dataUrl;
    $('preview').hidden = false;
    $('drop-hint').textContent = file.name;
    showError('');
    refresh();
  };
  reader.readAsDataURL(file);
}

async function ask(event) {
  event.preventDefault();
  if ($('ask').disabled) return;
  state.busy = true;
  refresh();
  showError('');
  $('answer').textContent = '';
  $('answer').dataset.done = 'false';
  $('timings').textContent = '';
  const t0 = performance.now();
  let first = 0;
  let text = '';
  let tokens = 0;
  try {
    const res = await fetch('/v1/chat/completions', {
      method: 'POST',
      headers: headers(),
      body: JSON.stringify({
        model: state.model,
        stream: true,
        stream_options: { include_usage: true },
        max_tokens: Number($('max-tokens').value) || 64,
        temperature: Number($('temperature').value) || 0,
        messages: [
          {
            role: 'user',
            content: [
              ...(state.dataUrl ? [{ type: 'image_url', image_url: { url: state.dataUrl } }] : []),
              ...(state.audio
                ? [
                    {
                      type: 'input_audio',
                      input_audio: { data: state.audio.data, format: state.audio.format },
                    },
                  ]
                : []),
              { type: 'text', text: $('question').value },
            ],
          },
        ],
      }),
    });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      throw new Error(body.error?.message ?? `HTTP ${res.status}`);
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let server = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end = buffer.indexOf('\n\n');
      while (end >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        end = buffer.indexOf('\n\n');
        if (!line.startsWith('data: ')) continue;
        const data = line.slice(6);
        if (data === '[DONE]') continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        const delta = chunk.choices?.[0]?.delta?.content;
        if (delta) {
          if (!first) first = performance.now();
          text += delta;
          $('answer').textContent = text.trim();
        }
        if (chunk.timings) server = chunk.timings;
        if (chunk.usage) tokens = chunk.usage.completion_tokens;
      }
    }
    const total = performance.now() - t0;
    const parts = [
      `first token ${Math.round((first || performance.now()) - t0)} ms`,
      `total ${Math.round(total)} ms`,
      `${tokens} tokens`,
    ];
    if (server) {
      parts.push(
        `server: encode ${server.encode_ms.toFixed(1)} ms, prefill ${server.prefill_ms.toFixed(1)} ms, ` +
          `decode ${server.tokens_per_second.toFixed(0)} tok/s`,
      );
    }
    $('timings').textContent = parts.join(' · ');
    $('answer').dataset.done = 'true';
    if (state.speech && text.trim()) {
      $('speak-text').value = text.trim();
      refreshSpeak();
    }
  } catch (e) {
    showError(e.message);
  } finally {
    state.busy = false;
    refresh();
  }
}

/** Shows the Speak controls when the server has a speech model. */
async function loadSpeech() {
  try {
    const res = await fetch('/health');
    const body = await res.json();
    state.speech = body.speech ?? null;
  } catch {
    state.speech = null;
  }
  const s = state.speech;
  $('speech').hidden = !s;
  if (!s) return;
  const select = $('voice');
  select.replaceChildren();
  const names = s.voices.length > 0 ? s.voices : ['default'];
  for (const name of names) {
    const option = document.createElement('option');
    option.value = name;
    option.textContent = name === 'default' ? `${s.model}'s own voice` : name;
    option.selected = name === (s.default_voice ?? 'default');
    select.append(option);
  }
  refreshSpeak();
}

function refreshSpeak() {
  const button = $('speak');
  button.disabled = !state.speech || (!state.speaking && !$('speak-text').value.trim());
  button.textContent = state.speaking ? '■ Stop' : 'Speak';
  button.setAttribute('aria-pressed', state.speaking ? 'true' : 'false');
}

/**
 * Sends the text to /v1/audio/speech as 16-bit PCM and plays each piece as it arrives (queued on
 * one AudioContext clock); at the end the whole sound goes into the player, to replay or save.
 */
async function speak() {
  if (state.speaking) {
    state.speaking.abort();
    return;
  }
  const text = $('speak-text').value.trim();
  if (!text || !state.speech) return;
  const ac = new AbortController();
  state.speaking = ac;
  refreshSpeak();
  showError('');
  $('speech-timings').textContent = '';
  $('speech').dataset.done = 'false';
  const player = $('speech-audio');
  if (player.src) URL.revokeObjectURL(player.src);
  player.removeAttribute('src');
  player.hidden = true;
  const t0 = performance.now();
  let first = 0;
  // made here, in the click, so that the browser lets it play
  state.audioContext ??= new AudioContext();
  const ctx = state.audioContext;
  ctx.resume?.();
  const sources = [];
  const stop = () => {
    for (const source of sources) source.stop();
  };
  ac.signal.addEventListener('abort', stop);
  const pieces = [];
  let count = 0;
  try {
    const res = await fetch('/v1/audio/speech', {
      method: 'POST',
      headers: headers(),
      signal: ac.signal,
      body: JSON.stringify({
        model: state.speech.model,
        input: text,
        voice: $('voice').value,
        response_format: 'pcm',
      }),
    });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      throw new Error(body.error?.message ?? `HTTP ${res.status}`);
    }
    const rate = Number(res.headers.get('x-sample-rate')) || state.speech.sample_rate;
    let at = 0;
    let carry = null; // a byte of a sample split between two reads
    const reader = res.body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      let bytes = value;
      if (carry) {
        bytes = new Uint8Array(value.length + 1);
        bytes[0] = carry;
        bytes.set(value, 1);
        carry = null;
      }
      if (bytes.length % 2 === 1) {
        carry = bytes[bytes.length - 1];
        bytes = bytes.subarray(0, bytes.length - 1);
      }
      if (bytes.length === 0) continue;
      if (!first) first = performance.now();
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
      const n = bytes.length / 2;
      const buffer = ctx.createBuffer(1, n, rate);
      const samples = buffer.getChannelData(0);
      for (let i = 0; i < n; i++) samples[i] = view.getInt16(i * 2, true) / 32768;
      const source = ctx.createBufferSource();
      source.buffer = buffer;
      source.connect(ctx.destination);
      at = Math.max(at, ctx.currentTime + 0.05);
      source.start(at);
      sources.push(source);
      at += n / rate;
      pieces.push(bytes.slice());
      count += n;
    }
    const wav = wavView(count, rate);
    const out = new Uint8Array(wav.buffer);
    let off = 44;
    for (const p of pieces) {
      out.set(p, off);
      off += p.length;
    }
    player.src = URL.createObjectURL(new Blob([out], { type: 'audio/wav' }));
    player.hidden = false;
    const seconds = count / rate;
    const total = performance.now() - t0;
    $('speech-timings').textContent = [
      `first audio ${Math.round((first || performance.now()) - t0)} ms`,
      `total ${Math.round(total)} ms`,
      `${seconds.toFixed(2)} s of speech at ${rate} Hz`,
      `${(seconds / (total / 1000)).toFixed(2)}× real time`,
    ].join(' · ');
    $('speech').dataset.done = 'true';
  } catch (e) {
    if (e.name !== 'AbortError') showError(e.message);
    stop();
  } finally {
    ac.signal.removeEventListener('abort', stop);
    state.speaking = null;
    refreshSpeak();
  }
}

$('file').addEventListener('change', (e) => pick(e.target.files[0]));
const drop = $('drop');
drop.addEventListener('dragover', (e) => {
  e.preventDefault();
  drop.classList.add('over');
});
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  pick(e.dataTransfer.files[0]);
});
$('form').addEventListener('submit', ask);
$('record').addEventListener('click', toggleRecording);
$('audio-clear').addEventListener('click', () => setAudio(null));
if (!navigator.mediaDevices?.getUserMedia || typeof MediaRecorder === 'undefined') {
  $('record').disabled = true;
  $('record').title = 'Recording needs a browser with MediaRecorder, on https or localhost';
}
$('speak').addEventListener('click', speak);
$('speak-text').addEventListener('input', refreshSpeak);
$('answer').dataset.done = 'false';
loadModel();
loadSpeech();
