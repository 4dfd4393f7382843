// Progress display for long work: a live bar with the loss on a terminal, a line every 10%
// otherwise. Always on stderr, so stdout stays clean for --json.
import cliProgress from 'cli-progress';
import type { Progress } from '../runtime/train.js';

function fmt(info: { loss?: number; scale?: number }): string {
  const parts: string[] = [];
  if (info.loss !== undefined) parts.push(`loss ${info.loss.toFixed(4)}`);
  if (info.scale !== undefined) parts.push(`scale ${info.scale}`);
  return parts.join('  ');
}

export function createProgress(opts: { quiet?: boolean } = {}): Progress {
  const stream = process.stderr;
  if (opts.quiet) return { start() {}, update() {}, stop() {}, log() {} };
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      { stream, format: '{label} |{bar}| {value}/{total} steps  {info}  {rate} step/s  eta {eta_formatted}', hideCursor: true, clearOnComplete: false },
      cliProgress.Presets.shades_classic,
    );
    let t0 = 0;
    return {
      start(total, label) {
        t0 = performance.now();
        bar.start(total, 0, { label, info: '', rate: '0.0' });
      },
      update(done, info) {
        bar.update(done, { info: fmt(info), rate: (done / ((performance.now() - t0) / 1000)).toFixed(1) });
      },
      stop: () => bar.stop(),
      log: (line) => stream.write(`${line}\n`),
    };
  }
  let total = 0;
  let next = 0;
  let t0 = 0;
  return {
    start(t, label) {
      total = t;
      next = 0;
      t0 = performance.now();
      stream.write(`${label}: ${t} steps\n`);
    },
    update(done, info) {
      if (done < next && done !== total) return;
      next = done + Math.max(1, Math.floor(total / 10));
      const rate = done / ((performance.now() - t0) / 1000);
      stream.write(`  step ${done}/${total}  ${fmt(info)}  ${rate.toFixed(1)} step/s\n`);
    },
    stop() {},
    log: (line) => stream.write(`${line}\n`),
  };
}
