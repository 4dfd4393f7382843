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

export function createProgress(opts: { quiet?: boolean; stream?: NodeJS.WriteStream } = {}): Progress {
  const stream = opts.stream ?? process.stderr;
  if (opts.quiet) return { start() {}, update() {}, stop() {}, log() {} };
  if (stream.isTTY) {
    // One line that fits an 80-column terminal (or a narrower one): the label goes on a line
    // of its own, the bar takes what the counts, loss, rate and ETA leave.
    const width = Math.min(80, stream.columns || 80);
    let bar: cliProgress.SingleBar | undefined;
    let t0 = 0;
    return {
      start(total, label) {
        t0 = performance.now();
        stream.write(`${label}\n`);
        const rest = `|| ${total}/${total} loss 0.0000 000.0 step/s eta 00m00s`.length + 1;
        bar = new cliProgress.SingleBar(
          { stream, format: '|{bar}| {value}/{total} {info} {rate} step/s eta {eta_formatted}', barsize: Math.max(8, width - rest), hideCursor: true, clearOnComplete: false },
          cliProgress.Presets.shades_classic,
        );
        bar.start(total, 0, { info: 'loss   -   ', rate: '0.0' });
      },
      update(done, info) {
        bar?.update(done, { info: info.loss !== undefined ? `loss ${info.loss.toFixed(4)}` : 'loss   -   ', rate: (done / ((performance.now() - t0) / 1000)).toFixed(1) });
      },
      stop: () => bar?.stop(),
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
