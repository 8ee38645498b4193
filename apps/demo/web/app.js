// The mm web demo: one image, one question, the answer streamed from /v1/chat/completions.
const $ = (id) => document.getElementById(id);
const state = { dataUrl: null, model: null, busy: false };

function headers() {
  const key = $('api-key').value.trim();
  return { 'content-type': 'application/json', ...(key && { authorization: `Bearer ${key}` }) };
}

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = !message;
}

function refresh() {
  $('ask').disabled = state.busy || !state.dataUrl || !state.model;
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

function pick(file) {
  if (!file) return;
  if (!file.type.startsWith('image/')) return showError(`${file.name} is not an image`);
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
              { type: 'image_url', image_url: { url: state.dataUrl } },
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
  } catch (e) {
    showError(e.message);
  } finally {
    state.busy = false;
    refresh();
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
$('answer').dataset.done = 'false';
loadModel();
