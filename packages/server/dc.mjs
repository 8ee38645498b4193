// N requests at once to a running server; window decode tok/s as vs-llama-server's decode scenario.
import { encodePng, syntheticImage } from '@mm/testing';
const [url, nArg = '8', tok = '64', seedArg = '1', textOnly = ''] = process.argv.slice(2);
const n = Number(nArg);
const health = async () => (await (await fetch(`${url}/health`)).json()).batch;
async function ask(i) {
  const image = `data:image/png;base64,${Buffer.from(encodePng(syntheticImage(336, 336, Number(seedArg) * 1000 + i))).toString('base64')}`;
  const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'bench-llama-l16-e2048-h32-kv8-ff5632-f16-s11-t65521', temperature: 0, max_tokens: Number(tok), stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: textOnly ? `Describe picture number ${i} of set ${seedArg} in detail. `.repeat(12) : [{ type: 'image_url', image_url: { url: image } }, { type: 'text', text: 'Describe the image.' }] }] }) });
  const at = []; let tokens = 0; let pending = '';
  for await (const chunk of res.body) {
    pending += Buffer.from(chunk).toString();
    let k;
    while ((k = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, k); pending = pending.slice(k + 1);
      if (!line.startsWith('data:') || line.includes('[DONE]')) continue;
      const c = JSON.parse(line.slice(5));
      if (c.choices?.[0]?.delta?.content) at.push(performance.now());
      if (c.usage) tokens = c.usage.completion_tokens;
    }
  }
  return { at, tokens };
}
const before = await health();
const rs = await Promise.all(Array.from({ length: n }, (_, i) => ask(i)));
const after = await health();
const start = Math.max(...rs.map((r) => r.at[0])); const end = Math.min(...rs.map((r) => r.at[r.at.length - 1]));
let t = 0; for (const r of rs) t += (r.at.filter((x) => x > start && x <= end).length * (r.tokens - 1)) / (r.at.length - 1);
console.log(`window ${(end - start).toFixed(0)} ms, ${t.toFixed(1)} tokens, ${(t * 1000 / (end - start)).toFixed(2)} tok/s`);
const d = (k) => after[k] - before[k];
console.log(`decode-only ${d('decode_only_rows')} rows / ${d('decode_only_steps')} steps, ${(d('decode_only_rows') * 1000 / d('decode_only_ms')).toFixed(2)} rows/s, ${(d('decode_only_ms') / d('decode_only_steps')).toFixed(1)} ms/step; mixed ${d('mixed_steps')}; steps ${d('steps')} tokens ${d('tokens')}`);
