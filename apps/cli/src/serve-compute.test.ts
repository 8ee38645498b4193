// `mm serve`'s compute threads: SCHED_IDLE where the kernel shares the CPU between process groups
// (autogroup, a cpu cgroup), the addon's nice 5 elsewhere or when MM_COMPUTE_NICE says so. The
// last test starts the real server on tiny-shapes and reads its threads' policies from /proc.

import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tinyShapesPaths } from '@mm/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { groupScheduled, serveComputeNice } from './commands/serve.js';

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'mm.js');

function files(map: Record<string, string>) {
  return (path: string) => map[path];
}

describe('groupScheduled', () => {
  const none = () => false;
  const autogroup = (on: boolean) => ({
    '/proc/sys/kernel/sched_autogroup_enabled': on ? '1\n' : '0\n',
  });

  it('is true in the root group with autogroup on, false with it off', () => {
    const root = { '/proc/self/cgroup': '4:cpu,cpuacct:/\n3:memory:/user.slice\n0::/\n' };
    expect(groupScheduled(files({ ...autogroup(true), ...root }), () => true)).toBe(true);
    expect(groupScheduled(files({ ...autogroup(false), ...root }), () => true)).toBe(false);
    expect(groupScheduled(files({}), () => true)).toBe(false); // nothing readable
  });

  it('is true in a cgroup v1 with the cpu controller, autogroup or not', () => {
    const v1 = { '/proc/self/cgroup': '5:memory:/x\n4:cpu,cpuacct:/docker/abc\n0::/\n' };
    expect(groupScheduled(files({ ...autogroup(false), ...v1 }), none)).toBe(true);
    expect(groupScheduled(files({ ...autogroup(true), ...v1 }), none)).toBe(true);
  });

  it('under cgroup v2, looks for the cpu controller in the cgroup and then its parents', () => {
    const v2 = files({ ...autogroup(false), '/proc/self/cgroup': '0::/a.slice/b/c.scope\n' });
    const seen: string[] = [];
    const onlyA = (p: string) => {
      seen.push(p);
      return p === '/sys/fs/cgroup/a.slice/cpu.weight';
    };
    expect(groupScheduled(v2, onlyA)).toBe(true);
    expect(seen).toEqual([
      '/sys/fs/cgroup/a.slice/b/c.scope/cpu.weight',
      '/sys/fs/cgroup/a.slice/b/cpu.weight',
      '/sys/fs/cgroup/a.slice/cpu.weight',
    ]);
    // no cpu controller on the way up: the root group, where autogroup decides
    expect(groupScheduled(v2, none)).toBe(false);
    const v2auto = files({ ...autogroup(true), '/proc/self/cgroup': '0::/a.slice/b/c.scope\n' });
    expect(groupScheduled(v2auto, none)).toBe(true);
  });
});

describe('serveComputeNice', () => {
  it("is idle on a group-scheduled Linux, the addon's default elsewhere or when set", () => {
    expect(serveComputeNice({}, 'linux', () => true)).toBe('idle');
    expect(serveComputeNice({ MM_COMPUTE_NICE: '' }, 'linux', () => true)).toBe('idle');
    expect(serveComputeNice({}, 'linux', () => false)).toBeUndefined();
    expect(serveComputeNice({}, 'darwin', () => true)).toBeUndefined();
    expect(serveComputeNice({ MM_COMPUTE_NICE: '5' }, 'linux', () => true)).toBeUndefined();
    expect(serveComputeNice({ MM_COMPUTE_NICE: '0' }, 'linux', () => true)).toBeUndefined();
  });
});

/** Each thread's nice and scheduling policy (0 SCHED_OTHER, 5 SCHED_IDLE), from /proc. */
function threads(pid: number): { tid: number; nice: number; policy: number }[] {
  const out: { tid: number; nice: number; policy: number }[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields 3, 4, ...
    out.push({ tid: Number(tid), nice: Number(rest[19 - 3]), policy: Number(rest[41 - 3]) });
  }
  return out;
}

describe.runIf(process.platform === 'linux')("mm serve's compute threads (real server)", () => {
  let child: ChildProcess | undefined;
  afterEach(() => {
    child?.kill('SIGTERM');
    child = undefined;
  });

  async function serveAndAsk(env: NodeJS.ProcessEnv): Promise<{ pid: number; err: string }> {
    const tiny = tinyShapesPaths();
    child = spawn(
      process.execPath,
      [bin, 'serve', '-m', tiny.llm, '--mmproj', tiny.mmproj, '--no-demo', '--port', '0'],
      { env, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const proc = child;
    let err = '';
    const url = await new Promise<string>((resolve, reject) => {
      proc.stderr?.on('data', (d: Buffer) => {
        err += d.toString('utf8');
        const found = /mm serve: \S+ on (http:\/\/\S+)/.exec(err);
        if (found?.[1] && err.includes('health:')) resolve(found[1]);
      });
      proc.once('exit', (code) => reject(new Error(`mm serve exited (${code}):\n${err}`)));
    });
    const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: models.data[0]?.id,
        messages: [{ role: 'user', content: 'What shape is it?' }],
        max_tokens: 4,
        temperature: 0,
      }),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    const body = (await res.json()) as { choices: { message: { content: string } }[] };
    expect(typeof body.choices[0]?.message.content).toBe('string');
    return { pid: proc.pid as number, err };
  }

  it('computes under SCHED_IDLE where the kernel shares the CPU between groups, else at nice 5', async () => {
    const env = { ...process.env };
    delete env.MM_COMPUTE_NICE;
    const { pid, err } = await serveAndAsk(env);
    const ts = threads(pid);
    // the JS thread keeps the priority it started with
    expect(ts.find((t) => t.tid === pid)).toEqual({ tid: pid, nice: getPriority(), policy: 0 });
    if (groupScheduled()) {
      expect(ts.some((t) => t.policy === 5)).toBe(true);
      expect(err).toContain('compute threads: SCHED_IDLE');
    } else {
      expect(ts.some((t) => t.policy === 5)).toBe(false);
      expect(ts.some((t) => t.policy === 0 && t.nice === Math.min(19, getPriority() + 5))).toBe(
        true,
      );
      expect(err).not.toContain('SCHED_IDLE');
    }
  });

  it('keeps MM_COMPUTE_NICE when it is set', async () => {
    const { pid, err } = await serveAndAsk({ ...process.env, MM_COMPUTE_NICE: '7' });
    const ts = threads(pid);
    expect(ts.find((t) => t.tid === pid)).toEqual({ tid: pid, nice: getPriority(), policy: 0 });
    expect(ts.some((t) => t.policy === 5)).toBe(false);
    expect(ts.some((t) => t.nice === Math.min(19, getPriority() + 7))).toBe(true);
    expect(err).not.toContain('SCHED_IDLE');
  });
});
