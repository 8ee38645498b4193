#!/usr/bin/env node
// The realistic shape's batched decode without HTTP: the native scheduler over a context made as
// `mm serve` makes it (--parallel sequences of -c positions, batch 2048, ubatch 512), in this
// process, with the CLIP-L encoder loaded. Each round embeds --parallel distinct 336 × 336
// pictures (one after another), then submits one request per sequence at once, in the order
// --order gives, each the picture between a few text tokens, --max-tokens tokens, greedy; and
// prints the tokens decoded while all of them were generating over that window (as
// `vs-llama-server.mjs --scenario decode` measures mm serve), and the decode-only rows/s of the
// scheduler. `--order shuffled` submits the sequences in a shuffled order, as requests land on
// whatever sequence is free in a server; `sorted` in order 0, 1, 2...
//
// `--seqs 0,1,2,3/0,2,4,6` instead compares sets of sequences side by side: each round runs one
// request per sequence of each set in turn (the sets' order alternating round by round), so that
// the cost of gaps between busy sequences (llama.cpp's ubatches take consecutive sequence ids
// only) shows against a set without gaps.
//
// Usage: node packages/server/scripts/decode-in-process.mjs [--order sorted|shuffled]
//        [--seqs A/B/...] [--parallel 8] [--threads N] [--max-tokens 64] [--rounds 3]
//        [--ctx 1024] [--json]
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { Scheduler } from '@mm/backbone-gguf';
import { ModelComponents } from '@mm/core';
import { encodePng, syntheticImage } from '@mm/testing';
import { intOption, median, printHelpAndExit, realisticPair } from './script-kit.mjs';

const { values } = parseArgs({
  options: {
    order: { type: 'string', default: 'shuffled' },
    seqs: { type: 'string' },
    parallel: { type: 'string', default: '8' },
    threads: { type: 'string', default: String(availableParallelism()) },
    'max-tokens': { type: 'string', default: '64' },
    rounds: { type: 'string', default: '3' },
    ctx: { type: 'string', default: '1024' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) printHelpAndExit(import.meta.url);
if (values.order !== 'sorted' && values.order !== 'shuffled') {
  console.error(`--order takes sorted or shuffled, got '${values.order}'`);
  process.exit(2);
}
const parallel = intOption(values, 'parallel');
const threads = intOption(values, 'threads');
const maxTokens = intOption(values, 'max-tokens', 2);
const rounds = intOption(values, 'rounds');
const perSeq = intOption(values, 'ctx', 16);
/** --seqs: sets of sequence ids (each in submission order), or null. */
const sets =
  values.seqs === undefined
    ? null
    : values.seqs.split('/').map((set) => {
        const ids = set.split(',').map(Number);
        if (
          ids.length === 0 ||
          new Set(ids).size !== ids.length ||
          !ids.every((x) => Number.isInteger(x) && x >= 0 && x < parallel)
        ) {
          console.error(
            `--seqs: '${set}' is not distinct sequence ids below --parallel ${parallel}`,
          );
          process.exit(2);
        }
        return ids;
      });

const log = (m) => process.stderr.write(`[decode-in-process] ${m}\n`);
log('making the realistic models once into benchDir() (minutes the first time)...');
const { model, mmproj } = await realisticPair();
const comp = await ModelComponents.load({ model, mmproj, threads });
const { backbone } = comp;
const context = await backbone.createContext({
  contextSize: perSeq * parallel,
  sequences: parallel,
  batchSize: 2048,
  ubatchSize: 512,
  threads,
});
const sched = Scheduler.create(context);

/** The sequences in submission order: 0, 1, 2... or a fixed shuffle of them (a new one per round). */
function orderOf(round) {
  const seqs = Array.from({ length: parallel }, (_, i) => i);
  if (values.order === 'sorted') return seqs;
  let s = 0x9e3779b9 ^ round;
  const next = () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32;
  };
  for (let i = seqs.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [seqs[i], seqs[j]] = [seqs[j], seqs[i]];
  }
  return seqs;
}

/** One request per sequence of `order` at once, pictures[k] for the k-th: the decode figures. */
async function runOnce(order, pictures) {
  const times = [];
  const firsts = [];
  const lasts = [];
  const before = sched.stats();
  await Promise.all(
    order.map((seq, k) => {
      const rowsOf = pictures[k];
      const head = backbone.tokenize(`<|im_start|>user\nPicture ${k}: `, { parseSpecial: true });
      const tail = backbone.tokenize(' Describe the image.<|im_end|>\n<|im_start|>assistant\n', {
        parseSpecial: true,
      });
      const n = rowsOf.length / backbone.nEmbd;
      let first = 0;
      return sched.submit({
        seq,
        keep: 0,
        items: [
          { tokens: head, pos0: 0 },
          { embeddings: rowsOf, nEmbd: backbone.nEmbd, causal: true, pos0: head.length },
          { tokens: tail, pos0: head.length + n },
        ],
        maxTokens,
        limit: perSeq,
        ignoreEndOfGeneration: true,
        onToken: () => {
          const t = performance.now();
          if (first === 0) {
            first = t;
            firsts.push(t);
          }
          lasts[k] = t;
          times.push(t);
        },
      }).result;
    }),
  );
  const after = sched.stats();
  const d = (key) => after[key] - before[key];
  const start = Math.max(...firsts);
  const end = Math.min(...lasts);
  const inside = times.filter((t) => t > start && t <= end).length;
  return {
    order,
    windowMs: end - start,
    tokPerS: end > start ? (inside * 1000) / (end - start) : Number.NaN,
    decodeOnlyRowsPerS: (d('decodeOnlyRows') * 1000) / d('decodeOnlyMs'),
  };
}

const rows = [];
try {
  for (let round = 0; round < rounds; round++) {
    const count = sets ? Math.max(...sets.map((x) => x.length)) : parallel;
    log(`round ${round + 1}/${rounds}: embedding ${count} pictures...`);
    const pictures = [];
    for (let i = 0; i < count; i++) {
      const png = encodePng(syntheticImage(336, 336, 1000 * (round + 1) + i));
      const media = await comp.embedImage(png);
      pictures.push(Float32Array.from(media.chunks[0].rows));
    }
    const orders = sets
      ? sets.map((x, i) => ({ x, i })).sort((a, b) => (round % 2 ? b.i - a.i : a.i - b.i))
      : [{ x: orderOf(round), i: 0 }];
    for (const { x: order, i } of orders) {
      log(
        `round ${round + 1}/${rounds}: ${order.length} requests at once, sequences ${order.join(', ')}...`,
      );
      rows.push({ set: i, ...(await runOnce(order, pictures)) });
    }
  }
} finally {
  sched.dispose();
  context.dispose();
  comp.dispose();
}

if (sets) {
  const spread = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });
  const bySet = sets.map((set, i) => {
    const mine = rows.filter((r) => r.set === i);
    return {
      seqs: set,
      tokPerS: spread(mine.map((r) => r.tokPerS)),
      decodeOnlyRowsPerS: spread(mine.map((r) => r.decodeOnlyRowsPerS)),
    };
  });
  if (values.json) {
    console.log(
      JSON.stringify({ parallel, threads, maxTokens, rounds: rows, sets: bySet }, null, 2),
    );
  } else {
    const f = (x) => `${x.median.toFixed(1)} [${x.min.toFixed(1)}-${x.max.toFixed(1)}]`;
    console.log(
      `--seqs, ${threads} threads, --parallel ${parallel}, ${maxTokens} tokens each, medians of ${rounds} rounds [min-max]:`,
    );
    for (const s of bySet) {
      console.log(
        `  sequences ${s.seqs.join(',').padEnd(16)} ${f(s.tokPerS)} tok/s while all generated (${(s.tokPerS.median / bySet[0].tokPerS.median).toFixed(2)}x the first set); decode-only ${f(s.decodeOnlyRowsPerS)} rows/s`,
      );
    }
  }
  process.exit(0);
}

const tok = rows.map((r) => r.tokPerS);
const summary = {
  order: values.order,
  parallel,
  threads,
  maxTokens,
  rounds: rows,
  tokPerS: { median: median(tok), min: Math.min(...tok), max: Math.max(...tok) },
};
if (values.json) {
  console.log(JSON.stringify(summary, null, 2));
} else {
  for (const [i, r] of rows.entries()) {
    console.log(
      `round ${i + 1} (sequences ${r.order.join(',')}): ${r.tokPerS.toFixed(1)} tok/s while all ${parallel} generated (${r.windowMs.toFixed(0)} ms); decode-only ${r.decodeOnlyRowsPerS.toFixed(1)} rows/s`,
    );
  }
  const { median: m, min, max } = summary.tokPerS;
  console.log(
    `${parallel} at once, --order ${values.order}, ${threads} threads: ${m.toFixed(1)} [${min.toFixed(1)}-${max.toFixed(1)}] tok/s (median [min-max] of ${rows.length} rounds)`,
  );
}
