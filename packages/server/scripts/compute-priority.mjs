#!/usr/bin/env node
// Why `mm serve` runs its compute threads under SCHED_IDLE where the kernel groups processes
// (Linux only; needs `nice`, `chrt` and `setsid`, from coreutils and util-linux).
//
// Usage: node packages/server/scripts/compute-priority.mjs [--spinners 2] [--seconds 20]
//        [--burst-ms 3] [--json]
//
// 1. "wait": for each priority (nice 0, 5, 10, 19, SCHED_IDLE), starts --spinners busy processes
//    at it in this session, and measures this process's JS thread beside them for --seconds: a
//    burst of --burst-ms of JS work every 50 ms (an intake, a collection), the event loop's delay
//    (max, p99) and the thread's time waiting for a core (/proc/self/task/<pid>/schedstat).
// 2. "group": for nice 0, 5, 19 and SCHED_IDLE, starts --spinners busy processes at it in this
//    session and as many at nice 0 in one other session (setsid), and reads the share of the CPU
//    the first ones got over 10 s (/proc/<pid>/stat). With autogroup on (or processes in cgroups
//    of their own), the share stays at about half whatever the priority: the priority is weighed
//    only inside the group.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { intOption, printHelpAndExit } from './script-kit.mjs';

const { values } = parseArgs({
  options: {
    spinners: { type: 'string', default: '2' },
    seconds: { type: 'string', default: '20' },
    'burst-ms': { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) printHelpAndExit(import.meta.url);
if (process.platform !== 'linux') {
  console.error('compute-priority: Linux only (nice, SCHED_IDLE, /proc)');
  process.exit(2);
}
const spinners = intOption(values, 'spinners');
const seconds = intOption(values, 'seconds');
const burstMs = intOption(values, 'burst-ms', 0);

const SPIN = ['-e', 'for(;;){}'];
/** The command line that runs a busy node process at `prio` ('idle' or a nice value). */
function atPriority(prio) {
  return prio === 'idle'
    ? ['chrt', '--idle', '0', process.execPath, ...SPIN]
    : ['nice', '-n', String(prio), process.execPath, ...SPIN];
}

function start(argv) {
  const [cmd, ...args] = argv;
  return spawn(cmd, args, { stdio: 'ignore' });
}

/** `n` busy nice-0 processes in one new session (one group); kill(-pid) stops them all. */
function otherSession(n) {
  const spin = `'${process.execPath}' -e 'for(;;){}'`;
  const line = `for i in $(seq ${n}); do ${spin} & done; wait`;
  return spawn('setsid', ['sh', '-c', line], { stdio: 'ignore' });
}

async function stopAll(children) {
  await Promise.all(
    children.map(
      (c) =>
        new Promise((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          c.once('exit', resolve);
          c.kill('SIGKILL');
        }),
    ),
  );
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** [ns on a core, ns waiting for one] of this process's JS thread. */
function schedstat() {
  const f = readFileSync(`/proc/${process.pid}/task/${process.pid}/schedstat`, 'utf8').split(' ');
  return [Number(f[0]), Number(f[1])];
}

/** utime + stime of `pid`, in clock ticks (/proc/<pid>/stat fields 14 and 15). */
function cpuTicks(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return Number(rest[14 - 3]) + Number(rest[15 - 3]);
}

async function waitCase(prio) {
  const children = Array.from({ length: spinners }, () => start(atPriority(prio)));
  await sleep(500);
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const s0 = schedstat();
  const timer = setInterval(() => {
    const end = performance.now() + burstMs;
    while (performance.now() < end);
  }, 50);
  await sleep(seconds * 1000);
  clearInterval(timer);
  h.disable();
  const s1 = schedstat();
  await stopAll(children);
  return {
    priority: prio === 'idle' ? 'SCHED_IDLE' : `nice ${prio}`,
    lagMaxMs: round2(h.max / 1e6),
    lagP99Ms: round2(h.percentile(99) / 1e6),
    waitMs: Math.round((s1[1] - s0[1]) / 1e6),
    runMs: Math.round((s1[0] - s0[0]) / 1e6),
  };
}

async function groupCase(prio) {
  const others = otherSession(spinners);
  const ours = Array.from({ length: spinners }, () => start(atPriority(prio)));
  await sleep(1000);
  // chrt / nice exec the node process in place, so the child's pid is the spinner's
  const t0 = ours.map((c) => cpuTicks(c.pid));
  const w0 = performance.now();
  await sleep(10_000);
  const t1 = ours.map((c) => cpuTicks(c.pid));
  const wallS = (performance.now() - w0) / 1000;
  await stopAll(ours);
  try {
    process.kill(-others.pid, 'SIGKILL'); // setsid made its pid the group's
  } catch {}
  await stopAll([others]);
  const ticks = t1.reduce((n, t, i) => n + t - t0[i], 0);
  const hz = 100; // USER_HZ: 100 on Linux
  return {
    priority: prio === 'idle' ? 'SCHED_IDLE' : `nice ${prio}`,
    sharePct: round1((100 * ticks) / (hz * wallS * availableParallelism())),
  };
}

const round1 = (x) => Math.round(x * 10) / 10;
const round2 = (x) => Math.round(x * 100) / 100;

const autogroup = (() => {
  try {
    return readFileSync('/proc/sys/kernel/sched_autogroup_enabled', 'utf8').trim() === '1';
  } catch {
    return false;
  }
})();
const wait = [];
for (const p of [0, 5, 10, 19, 'idle']) wait.push(await waitCase(p));
const group = [];
for (const p of [0, 5, 19, 'idle']) group.push(await groupCase(p));

if (values.json) {
  console.log(JSON.stringify({ autogroup, spinners, seconds, burstMs, wait, group }));
} else {
  console.log(
    `\n== compute priority: ${spinners} busy processes, ${availableParallelism()} cores, autogroup ${autogroup ? 'on' : 'off'}`,
  );
  console.log(
    `   wait: this JS thread beside them, a ${burstMs} ms burst every 50 ms, ${seconds} s each`,
  );
  for (const r of wait)
    console.log(
      `   ${r.priority.padEnd(11)} lag max ${r.lagMaxMs} ms, p99 ${r.lagP99Ms} ms; waited ${r.waitMs} ms for a core (ran ${r.runMs} ms)`,
    );
  console.log(
    '   group: their share of the machine against as many nice-0 ones of another session',
  );
  for (const r of group) console.log(`   ${r.priority.padEnd(11)} ${r.sharePct} %`);
}
