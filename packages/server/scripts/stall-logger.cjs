// A preload for `mm serve` that logs each event-loop stall: where a stall came from (the JS
// thread computing, or waiting for a core, or a collection).
//
// Usage: LAG_SERVER_NODE_ARGS='--require ./packages/server/scripts/stall-logger.cjs' \
//          node packages/server/scripts/event-loop-lag.mjs --shape realistic
//        (or node --require .../stall-logger.cjs apps/cli/bin/mm.js serve ...)
//
// Every millisecond a timer reads the JS thread's /proc/<pid>/task/<pid>/schedstat (time on a
// core, time waiting for one) into a reused buffer, so that the logger itself makes almost no
// garbage. When the timer fires more than MM_STALL_MS (default 7) late, it appends one line to
// MM_STALL_LOG (default <tmpdir>/mm-stalls-<pid>.txt): seconds since start, the gap, the ms the
// thread ran and waited in it, and V8's collections inside it (kind@start+duration: 1 minor,
// 4 major, 8 incremental). Linux only; elsewhere it does nothing.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { PerformanceObserver, performance } = require('node:perf_hooks');

const pid = process.pid;
const statPath = `/proc/${pid}/task/${pid}/schedstat`;
if (process.platform === 'linux' && fs.existsSync(statPath)) {
  const out = process.env.MM_STALL_LOG || path.join(os.tmpdir(), `mm-stalls-${pid}.txt`);
  const limit = Number(process.env.MM_STALL_MS) || 7;
  const fd = fs.openSync(statPath, 'r');
  const buf = Buffer.alloc(96);
  const now = new Float64Array(2); // ns on a core, ns waiting for one
  const read = () => {
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    let field = 0;
    let v = 0;
    for (let i = 0; i < n && field < 2; i++) {
      const c = buf[i];
      if (c === 32) {
        now[field++] = v;
        v = 0;
      } else v = v * 10 + (c - 48);
    }
  };
  const gcs = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gcs.push([e.startTime, e.duration, e.detail?.kind]);
      if (gcs.length > 100) gcs.shift();
    }
  }).observe({ entryTypes: ['gc'] });
  read();
  let ran = now[0];
  let waited = now[1];
  let last = performance.now();
  const t0 = last;
  setInterval(() => {
    const t = performance.now();
    read();
    const gap = t - last;
    if (gap > limit) {
      const inGap = gcs
        .filter(([s, d]) => s + d > last - 1 && s < t)
        .map(([s, d, k]) => ` gc${k}@${(s - last).toFixed(1)}+${d.toFixed(1)}`)
        .join('');
      const ms = (ns) => (ns / 1e6).toFixed(1);
      fs.appendFileSync(
        out,
        `${((t - t0) / 1000).toFixed(2)}s gap=${gap.toFixed(1)} run=${ms(now[0] - ran)} wait=${ms(now[1] - waited)}${inGap}\n`,
      );
    }
    last = t;
    ran = now[0];
    waited = now[1];
  }, 1).unref();
}
