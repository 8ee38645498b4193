import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { mtmdCli, synthWavFixture, tinyAudioPair } from '@mm/testing';
import { type BrowserContext, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answers, startTiny, tiny } from './helpers.test-util.js';
import { type MmServer, startServer } from './server.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  console.warn(
    `browser test skipped: ${CHROMIUM} is missing (Debian: apt-get install -y chromium; .ci/run installs it)`,
  );
}
const outDir = resolve(import.meta.dirname, '..', 'test-output');

describe.skipIf(!haveChromium)('web demo in headless Debian chromium', () => {
  let server: MmServer;
  let browser: BrowserContext;
  let profile: string;

  beforeAll(async () => {
    server = await startTiny();
    profile = mkdtempSync(join(tmpdir(), 'mm-chromium-'));
    // A fresh profile folder: the persistent-context form of --user-data-dir.
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      permissions: ['microphone'],
      args: [
        // a fake microphone (a beeping tone) that needs no prompt
        '--use-fake-device-for-media-stream',
        '--use-fake-ui-for-media-stream',
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  it('uploads a sample, asks, and shows the streamed answer with timings', async () => {
    const page = await browser.newPage();
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(`${server.url}/`);
    await expect.poll(() => page.textContent('#model')).toBe('tiny-shapes-llm');

    const item = answers()[5]!;
    const q = item.questions.find((x) => x.kind === 'describe')!;
    await page.setInputFiles('#file', join(tiny.samples, item.image));
    await expect.poll(() => page.isEnabled('#ask')).toBe(true);
    await page.fill('#question', q.question);

    // Count the text updates the page makes while the answer streams in.
    // (A string: this package's TS has no DOM types.)
    await page.evaluate(`(() => {
      window.updates = [];
      const answer = document.getElementById('answer');
      new MutationObserver(() => window.updates.push(answer.textContent))
        .observe(answer, { childList: true, characterData: true, subtree: true });
    })()`);
    await page.click('#ask');
    await page.waitForSelector('#answer[data-done="true"]', { timeout: 60_000 });

    expect(await page.textContent('#answer')).toBe(q.answer);
    // The page renders what the stream brings as it comes: every update is a prefix of the answer.
    // (A 7-token tiny-shapes answer is decoded in about a millisecond; the server wakes JS at most
    // once a millisecond, so it may arrive in one or two SSE events.)
    const updates = ((await page.evaluate('window.updates')) as string[]).filter((u) => u !== '');
    expect(updates.length).toBeGreaterThanOrEqual(1);
    for (const u of updates) expect(q.answer.startsWith(u)).toBe(true);
    expect(await page.textContent('#timings')).toMatch(/first token \d+ ms .* tokens/);
    expect(await page.isHidden('#error')).toBe(true);
    expect(requests.every((u) => u.startsWith(server.url))).toBe(true);

    mkdirSync(outDir, { recursive: true });
    await page.screenshot({ path: join(outDir, 'demo.png'), fullPage: true });
    expect(existsSync(join(outDir, 'demo.png'))).toBe(true);
  });

  describe('with an audio model (tiny voxtral, libmtmd fused)', () => {
    let audioServer: MmServer;
    let pair: Awaited<ReturnType<typeof tinyAudioPair>>;
    beforeAll(async () => {
      pair = await tinyAudioPair({ projector: 'voxtral' });
      audioServer = await startServer({
        model: pair.model,
        mmproj: pair.mmproj,
        port: 0,
        threads: 2,
        jinja: false,
        modelId: 'tiny-voxtral',
      });
    });
    afterAll(async () => {
      await audioServer?.close();
    });

    it('takes a sound file and answers as llama-mtmd-cli --audio', async () => {
      const wav = await synthWavFixture(3, { seed: 21 });
      const question = 'What do you hear?';
      const ref = await mtmdCli({
        ...pair,
        audio: [wav],
        prompt: question,
        maxTokens: 10,
        threads: 2,
      });
      const page = await browser.newPage();
      const bodies: string[] = [];
      page.on('request', (r) => {
        if (r.url().endsWith('/v1/chat/completions')) bodies.push(r.postData() ?? '');
      });
      await page.goto(`${audioServer.url}/`);
      await expect.poll(() => page.textContent('#model')).toBe('tiny-voxtral');
      await page.setInputFiles('#file', wav);
      await expect.poll(() => page.isVisible('#audio-preview')).toBe(true);
      await expect.poll(() => page.isEnabled('#ask')).toBe(true);
      expect(await page.textContent('#audio-name')).toMatch(/\.wav$/);
      await page.fill('#question', question);
      await page.click('details summary');
      await page.fill('#max-tokens', '10');
      await page.click('#ask');
      await page.waitForSelector('#answer[data-done="true"]', { timeout: 60_000 });
      console.log(
        `demo, voxtral: ${JSON.stringify(await page.textContent('#answer'))} llama-mtmd-cli ${JSON.stringify(ref)}`,
      );
      expect(await page.textContent('#answer')).toBe(ref.trim());
      expect(await page.isHidden('#error')).toBe(true);
      // the file went as it is: an input_audio part of format wav, and no picture
      const sent = JSON.parse(bodies[0] as string);
      const parts = sent.messages[0].content;
      expect(parts.map((p: { type: string }) => p.type)).toEqual(['input_audio', 'text']);
      expect(parts[0].input_audio.format).toBe('wav');
      expect(Buffer.from(parts[0].input_audio.data, 'base64')).toEqual(readFileSync(wav));
    });

    it('records from the microphone (fake device), sends 16 kHz mono WAV, and gets an answer', async () => {
      const page = await browser.newPage();
      const bodies: string[] = [];
      page.on('request', (r) => {
        if (r.url().endsWith('/v1/chat/completions')) bodies.push(r.postData() ?? '');
      });
      await page.goto(`${audioServer.url}/`);
      await expect.poll(() => page.textContent('#model')).toBe('tiny-voxtral');
      expect(await page.isEnabled('#record')).toBe(true);
      await page.click('#record');
      await expect.poll(() => page.getAttribute('#record', 'aria-pressed')).toBe('true');
      await page.waitForTimeout(1500);
      await page.click('#record');
      await expect.poll(() => page.isVisible('#audio-preview'), { timeout: 10_000 }).toBe(true);
      expect(await page.textContent('#audio-name')).toBe('recording.wav');
      await page.click('details summary');
      await page.fill('#max-tokens', '4');
      await page.click('#ask');
      await page.waitForSelector('#answer[data-done="true"]', { timeout: 60_000 });
      expect(await page.isHidden('#error')).toBe(true);
      expect((await page.textContent('#answer'))?.length).toBeGreaterThan(0);
      const part = JSON.parse(bodies[0] as string).messages[0].content[0];
      expect(part.input_audio.format).toBe('wav');
      const wav = Buffer.from(part.input_audio.data, 'base64');
      expect(wav.subarray(0, 4).toString('latin1')).toBe('RIFF');
      expect([wav.readUInt16LE(22), wav.readUInt32LE(24), wav.readUInt16LE(34)]).toEqual([
        1, 16000, 16,
      ]);
      const seconds = wav.readUInt32LE(40) / 2 / 16000;
      console.log(`demo, recording: ${seconds.toFixed(2)} s of 16 kHz mono WAV`);
      expect(seconds).toBeGreaterThan(0.5);
    });
  });
});
