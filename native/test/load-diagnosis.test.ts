import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MmError } from '@mm/errors';
import { describe, expect, it } from 'vitest';
import { loadAddon } from '../lib/load.js';

// Runs in its own module graph (vitest isolates files), so nothing was loaded before.
describe('addon loader diagnosis', () => {
  it('fails with MM_NATIVE_LOAD naming the file, the platform and how to rebuild', () => {
    const bogus = join(mkdtempSync(join(tmpdir(), 'mm-native-')), 'mm.node');
    writeFileSync(bogus, 'not a shared object');
    const old = process.env.MM_NATIVE_PATH;
    process.env.MM_NATIVE_PATH = bogus;
    try {
      let caught: unknown;
      try {
        loadAddon();
      } catch (e) {
        caught = e;
      }
      expect(MmError.hasCode(caught, 'MM_NATIVE_LOAD')).toBe(true);
      const message = (caught as Error).message;
      expect(message).toContain(bogus);
      expect(message).toContain(process.version);
      expect(message).toContain('npx @mm/native build');
    } finally {
      if (old === undefined) delete process.env.MM_NATIVE_PATH;
      else process.env.MM_NATIVE_PATH = old;
    }
  });
});
