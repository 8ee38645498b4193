import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answers, startTiny, tiny } from './helpers.test-util.js';
import type { MmServer } from './server.js';

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
      args: [
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
    const updates = (await page.evaluate('window.updates')) as string[];
    expect(updates.filter((u) => u !== '').length).toBeGreaterThan(1);
    expect(await page.textContent('#timings')).toMatch(/first token \d+ ms .* tokens/);
    expect(await page.isHidden('#error')).toBe(true);
    expect(requests.every((u) => u.startsWith(server.url))).toBe(true);

    mkdirSync(outDir, { recursive: true });
    await page.screenshot({ path: join(outDir, 'demo.png'), fullPage: true });
    expect(existsSync(join(outDir, 'demo.png'))).toBe(true);
  });
});
