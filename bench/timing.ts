// Timing helpers shared by benchmark sections.
//
// Machines this runs on are often shared (other processes compete for the same two cores),
// so contenders are timed round-robin: each round runs every contender once, and a burst
// of load hits all of them alike. Medians are reported, with the minimum beside them.

export interface Contender {
  name: string;
  /** One complete run, resolved when the work is finished (GPU work included). */
  run: () => Promise<void>;
}

export interface Timing {
  name: string;
  samplesMs: number[];
  medianMs: number;
  minMs: number;
}

export async function timeRoundRobin(
  contenders: Contender[],
  opts: { warmup?: number; minRounds?: number; maxRounds?: number; budgetMs?: number } = {},
): Promise<Timing[]> {
  const warmup = opts.warmup ?? 1;
  const minRounds = opts.minRounds ?? 2;
  const maxRounds = opts.maxRounds ?? 5;
  const budget = opts.budgetMs ?? 30_000;
  for (const c of contenders) for (let i = 0; i < warmup; i++) await c.run();
  const samples = contenders.map(() => [] as number[]);
  const start = performance.now();
  for (let round = 0; round < maxRounds; round++) {
    if (round >= minRounds && performance.now() - start > budget) break;
    for (let i = 0; i < contenders.length; i++) {
      const t0 = performance.now();
      await contenders[i].run();
      samples[i].push(performance.now() - t0);
    }
  }
  return contenders.map((c, i) => {
    const s = [...samples[i]].sort((a, b) => a - b);
    const mid = s.length >> 1;
    const medianMs = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
    return { name: c.name, samplesMs: samples[i], medianMs, minMs: s[0] };
  });
}

/** Submits `encode`'s commands and resolves when the queue has finished them. */
export async function submitAndWait(device: GPUDevice, encode: (encoder: GPUCommandEncoder) => void): Promise<void> {
  const encoder = device.createCommandEncoder();
  encode(encoder);
  device.queue.submit([encoder.finish()]);
  await device.queue.onSubmittedWorkDone();
}

export function fmt(x: number, digits = 2): string {
  return Number.isFinite(x) ? x.toFixed(digits) : String(x);
}
