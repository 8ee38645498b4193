import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { addonCandidates, loadAddon, systemInfo } from '../lib/index.js';
import { nativeDir } from './helpers.js';

describe('systemInfo', () => {
  it('reports the pinned llama.cpp commit, the CPU backend and device, and CPU features', () => {
    const lock = JSON.parse(readFileSync(join(nativeDir, 'vendor.lock.json'), 'utf8'));
    const info = systemInfo();
    expect(info.llamaCommit).toBe(lock.commit);
    expect(info.backends).toContain('CPU');
    const cpu = info.devices.find((d) => d.type === 'cpu');
    expect(cpu?.backend).toBe('CPU');
    expect(info.hardwareThreads).toBeGreaterThanOrEqual(1);
    expect(Object.keys(info.cpuFeatures).length).toBeGreaterThan(0);
    expect(info.supportsMmap).toBe(true);
    expect(info.llamaSystemInfo).toContain('CPU');
  });
});

describe('addon loader', () => {
  it('loads mm.node once and reuses it', () => {
    expect(loadAddon()).toBe(loadAddon());
  });

  it('looks in MM_NATIVE_PATH first', () => {
    const old = process.env.MM_NATIVE_PATH;
    process.env.MM_NATIVE_PATH = '/nonexistent/mm.node';
    try {
      expect(addonCandidates()[0]).toEqual({
        source: 'env',
        path: '/nonexistent/mm.node',
        present: false,
      });
    } finally {
      if (old === undefined) delete process.env.MM_NATIVE_PATH;
      else process.env.MM_NATIVE_PATH = old;
    }
  });
});
