// Per-kernel timing of a compiled program's schedule on the WebGPU device (`mpc profile`,
// `mpc train --profile`).
//
// Each kernel is timed on its own: with the 'timestamp-query' feature, every kernel of the
// schedule runs in a compute pass of its own whose beginning and end write a timestamp (one
// submit per repetition: device time, no host overhead); without it, one submit per kernel
// and a wait for the queue (wall clock, host overhead included). The whole step is timed as
// `GpuProgram.run` runs it, one submit of one pass, from submit to completion, so that the
// difference to the sum of the kernels shows what dispatching and submitting cost.
//
// Statistic: the median over the repetitions, except where the timestamps are quantized
// (Dawn rounds them down to 2^16 ns unless its `timestamp_quantization` toggle is off, as
// src/runtime/device.ts turns it off in Node; browsers keep it): a
// kernel shorter than the quantum then reads 0 or one quantum, and the median of such
// readings is biased while their mean is not (the phase of the clock is uniform). So there
// each time is the mean of the readings within two quanta of their median: unbiased under
// the quantization, and still deaf to the odd repetition that the OS delayed.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isFloat } from '../ir/dtypes.js';
import { sizeOf } from '../ir/tensor.js';
import { matmulK } from '../ops/matmul-k.js';
import { InputError } from '../onnx/import.js';
import { loadProgram, openProgram, type LoadedProgram } from './engine.js';
import { GpuProgram } from './gpu-program.js';

export type ScheduleName = 'train' | 'eval';

/** What a kernel is, independent of timing: its IR node, op, FLOPs and bytes bound. */
export interface KernelFacts {
  /** Index into program.json's kernels. */
  index: number;
  file: string;
  node: string;
  op: string;
  /** Floating-point operations (multiply and add counted apart) of GEMM-like and Conv kernels. */
  flops: number | null;
  /** Sum of the sizes of the distinct buffers the kernel binds. */
  bytes: number;
}

interface Rated {
  ms: number;
  /** Fraction of the sum of all kernel times. */
  share: number;
  flops: number | null;
  bytes: number;
  gflops_per_s: number | null;
  gb_per_s: number;
}

export type KernelProfile = KernelFacts & Rated;
export type OpProfile = { op: string; count: number } & Rated;

export interface Profile {
  schedule: ScheduleName;
  model: string;
  policy: string;
  batch: number;
  adapter: string;
  /** timestamp-query: device time of each kernel in a pass of its own; submit-per-kernel: wall clock. */
  method: 'timestamp-query' | 'submit-per-kernel';
  /** 'near-median-mean': the mean of the readings within two timestamp quanta of their median. */
  statistic: 'median' | 'near-median-mean';
  /** Granularity of the device timestamps in ns (1 when not quantized); null without timestamps. */
  timestamp_quantum_ns: number | null;
  warmup: number;
  reps: number;
  /** By op type, slowest first. */
  ops: OpProfile[];
  /** Every kernel of the schedule, in schedule order. */
  kernels: KernelProfile[];
  total: {
    /** Sum of the kernel times. */
    kernels_ms: number;
    /** One submit of the whole schedule in one pass, wall clock from submit to completion. */
    step_ms: number;
    /** The same pass, device time between its beginning and end (with timestamp queries). */
    step_device_ms: number | null;
    /** step_ms - kernels_ms: dispatch, submit and wait overhead. */
    overhead_ms: number;
  };
}

export interface ProfileOptions {
  schedule?: ScheduleName;
  /** Measured repetitions (default 10). */
  reps?: number;
  /** Unmeasured repetitions first (default 2): lavapipe compiles each pipeline on its first dispatch. */
  warmup?: number;
  /** 'wall-clock': one submit and wait per kernel even where the device has timestamp queries. */
  method?: 'auto' | 'wall-clock';
}

interface IrJson {
  values: { name: string; shape: (number | string)[] }[];
  nodes: { name: string; op: string; inputs: string[]; outputs: string[]; attrs: Record<string, unknown> }[];
}

/** FLOPs of a GEMM-like or convolution node from its value shapes; null for other ops. */
function nodeFlops(n: IrJson['nodes'][number], shape: (v: string) => number[]): number | null {
  switch (n.op) {
    case 'Gemm': {
      // out [M, N]; A [M, K] or, transposed, [K, M].
      const a = shape(n.inputs[0]);
      return 2 * sizeOf(shape(n.outputs[0])) * (n.attrs.transA === 1 ? a[0] : a[1]);
    }
    case 'MatMul':
      // out [...batch, M, N] (in some order); A [...batch, M, K] as the product reads it.
      return 2 * sizeOf(shape(n.outputs[0])) * matmulK(n.attrs, shape(n.inputs[0]));
    case 'Conv':
    case 'mpc.ConvGradInput':
    case 'mpc.ConvGradWeight': {
      // 2 * (elements of Y) * Cin/groups * kh * kw, W = [M, Cin/groups, kh, kw]. The gradient
      // ops do the same multiply-adds: dX from dY and W, dW (their output) from dY and X.
      const y = n.op === 'Conv' ? shape(n.outputs[0]) : shape(n.inputs[0]);
      const w = n.op === 'mpc.ConvGradWeight' ? shape(n.outputs[0]) : shape(n.inputs[1]);
      return 2 * sizeOf(y) * (sizeOf(w) / w[0]);
    }
    default:
      return null;
  }
}

function irOf(p: LoadedProgram, schedule: ScheduleName): IrJson {
  const file = schedule === 'train' ? p.program.files.trainGraph : p.program.files.evalGraph;
  return JSON.parse(readFileSync(join(p.dir, file), 'utf8')) as IrJson;
}

/**
 * The facts of every kernel of a schedule, in schedule order, from program.json and the
 * lowered IR. A node with several kernels has its FLOPs on the first of them; copies of
 * state updates (node `update <state>`) are op 'copy'.
 */
export function kernelFacts(p: LoadedProgram, schedule: ScheduleName): KernelFacts[] {
  const ir = irOf(p, schedule);
  const shapes = new Map(ir.values.map((v) => [v.name, v.shape]));
  const shape = (v: string): number[] => {
    const s = shapes.get(v);
    if (!s || s.some((d) => typeof d !== 'number')) throw new Error(`value '${v}' has no static shape in the IR`);
    return s as number[];
  };
  const nodes = new Map(ir.nodes.map((n) => [n.name, n]));
  const seen = new Set<string>();
  return p.program.schedules[schedule].kernels.map((index) => {
    const k = p.program.kernels[index];
    const n = nodes.get(k.node);
    const first = !seen.has(k.node);
    seen.add(k.node);
    const bytes = [...new Set(k.bindings.map((b) => b.buffer))].reduce((s, b) => s + p.program.buffers[b].bytes, 0);
    if (k.fused) {
      // A fused kernel: its op is the chain's ops (Gemm+Add), its FLOPs those of its GEMMs.
      const chain = k.fused.map((name) => nodes.get(name)).filter((m) => m !== undefined);
      const flops = chain.reduce((s, m) => s + (nodeFlops(m, shape) ?? 0), 0);
      return { index, file: k.file, node: k.node, op: chain.map((m) => m.op).join('+'), flops: flops || null, bytes };
    }
    const op = n ? n.op : k.node.startsWith('update ') ? 'copy' : '?';
    return { index, file: k.file, node: k.node, op, flops: n && first ? nodeFlops(n, shape) : null, bytes };
  });
}

/** Hash of an index to [0, 1): deterministic input data. */
function unit(i: number, salt: number): number {
  let h = Math.imul(i ^ salt, 0x9e3779b1) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  return (h >>> 0) / 4294967296;
}

/**
 * Deterministic valid data for a schedule's data input and labels: floats in [0, 1), token
 * ids below the rows of the embedding table they index (else below the number of classes),
 * class labels in [0, classes).
 */
export function fillInputs(prog: GpuProgram, p: LoadedProgram, schedule: ScheduleName): void {
  const { program } = p;
  const ir = irOf(p, schedule);
  const s = program.schedules[schedule];
  const pred = program.buffers[program.schedules.eval.outputs[program.io.prediction]];
  const classes = pred.shape.at(-1) ?? 1;
  const shapes = new Map(ir.values.map((v) => [v.name, v.shape]));
  const gather = ir.nodes.find((n) => n.op === 'Gather' && n.inputs[1] === program.io.input);
  const gathered = gather ? (shapes.get(gather.inputs[0])?.[typeof gather.attrs.axis === 'number' ? gather.attrs.axis : 0] as number | undefined) : undefined;
  const fill = (name: string, range: number, salt: number) => {
    const buf = s.inputs[name];
    if (buf === undefined) return;
    const b = program.buffers[buf];
    const n = sizeOf(b.shape);
    const values = isFloat(b.dtype) ? Float32Array.from({ length: n }, (_, i) => unit(i, salt)) : Int32Array.from({ length: n }, (_, i) => Math.floor(unit(i, salt) * range));
    prog.write(buf, values);
  };
  fill(program.io.input, gathered ?? classes, 1);
  fill(program.io.labels, classes, 2);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The mean of the values within `within` of the median (the median is one of them). */
function nearMedianMean(xs: number[], within: number): number {
  const m = median(xs);
  const near = xs.filter((x) => Math.abs(x - m) <= within);
  return near.length ? near.reduce((a, b) => a + b, 0) / near.length : m;
}

/** The largest power of two up to 2^20 that divides every timestamp (1 for too few to tell). */
function quantum(stamps: bigint[]): number {
  if (stamps.length < 8) return 1;
  let q = 1n << 20n;
  for (const t of stamps) while (q > 1n && t % q !== 0n) q >>= 1n;
  return Number(q);
}

/** Device timestamps: every kernel in a pass of its own, one submit per chunk of kernels. */
class TimestampTimer {
  private static readonly CHUNK = 2048; // a query set holds at most 4096 queries
  private readonly querySet: GPUQuerySet;
  private readonly resolve: GPUBuffer;
  private readonly staging: GPUBuffer;
  readonly stamps: bigint[] = [];

  constructor(private readonly device: GPUDevice) {
    const n = TimestampTimer.CHUNK;
    this.querySet = device.createQuerySet({ type: 'timestamp', count: 2 * n });
    this.resolve = device.createBuffer({ size: 16 * n, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    this.staging = device.createBuffer({ size: 16 * n, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }

  /** Device ns of each group of kernels, each group in one pass of its own. */
  async time(prog: GpuProgram, groups: number[][], keep: boolean): Promise<number[]> {
    const out: number[] = [];
    for (let s = 0; s < groups.length; s += TimestampTimer.CHUNK) {
      const chunk = groups.slice(s, s + TimestampTimer.CHUNK);
      const enc = this.device.createCommandEncoder();
      chunk.forEach((ks, i) => {
        const pass = enc.beginComputePass({ timestampWrites: { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
        prog.encode(pass, ks);
        pass.end();
      });
      const bytes = 16 * chunk.length;
      enc.resolveQuerySet(this.querySet, 0, 2 * chunk.length, this.resolve, 0);
      enc.copyBufferToBuffer(this.resolve, 0, this.staging, 0, bytes);
      this.device.queue.submit([enc.finish()]);
      await this.staging.mapAsync(GPUMapMode.READ, 0, bytes);
      const t = new BigUint64Array(this.staging.getMappedRange(0, bytes).slice(0));
      this.staging.unmap();
      for (let i = 0; i < chunk.length; i++) {
        if (keep) this.stamps.push(t[2 * i], t[2 * i + 1]);
        out.push(t[2 * i + 1] > t[2 * i] ? Number(t[2 * i + 1] - t[2 * i]) : 0);
      }
    }
    return out;
  }

  destroy(): void {
    this.querySet.destroy();
    this.resolve.destroy();
    this.staging.destroy();
  }
}

/**
 * Times every kernel of `schedule` and the whole step: `warmup` unmeasured repetitions, then
 * `reps` measured ones, each kernel's time the median (or mean, see the top of the file).
 * The program runs real steps: its state (weights, optimizer moments) changes.
 */
export async function profileSchedule(prog: GpuProgram, p: LoadedProgram, opts: ProfileOptions = {}): Promise<Profile> {
  const schedule = opts.schedule ?? 'train';
  const reps = opts.reps ?? 10;
  const warmup = opts.warmup ?? 2;
  if (!p.program.schedules[schedule]) throw new InputError(`${p.dir}: the program has no '${schedule}' schedule`);
  const facts = kernelFacts(p, schedule);
  const kernels = facts.map((f) => f.index);
  const { device } = prog.gpu;
  const timer = opts.method !== 'wall-clock' && device.features.has('timestamp-query') ? new TimestampTimer(device) : undefined;
  const perKernel: number[][] = kernels.map(() => []);
  const step: number[] = [];
  const stepDevice: number[] = [];

  const runKernelsApart = async (): Promise<number[]> => {
    prog.clear(schedule);
    if (timer) return (await timer.time(prog, kernels.map((k) => [k]), true)).map((ns) => ns / 1e6);
    const ms: number[] = [];
    for (const k of kernels) {
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      prog.encode(pass, [k]);
      pass.end();
      const t0 = performance.now();
      device.queue.submit([enc.finish()]);
      await device.queue.onSubmittedWorkDone();
      ms.push(performance.now() - t0);
    }
    return ms;
  };

  device.pushErrorScope('validation');
  try {
    for (let r = 0; r < warmup + reps; r++) {
      const measured = r >= warmup;
      const ms = await runKernelsApart();
      const t0 = performance.now();
      prog.run(schedule);
      await prog.sync();
      const wall = performance.now() - t0;
      if (timer) prog.clear(schedule);
      const dev = timer ? (await timer.time(prog, [kernels], measured))[0] / 1e6 : undefined;
      if (!measured) continue;
      ms.forEach((m, i) => perKernel[i].push(m));
      step.push(wall);
      if (dev !== undefined) stepDevice.push(dev);
    }
  } finally {
    const err = await device.popErrorScope();
    timer?.destroy();
    if (err) throw new Error(`WebGPU error while profiling: ${err.message}`);
  }

  const q = timer ? quantum(timer.stamps) : null;
  const quantized = q !== null && q >= 1024;
  const statistic = quantized ? 'near-median-mean' : 'median';
  const stat = (xs: number[]) => (quantized ? nearMedianMean(xs, (2 * q!) / 1e6) : median(xs));
  const times = perKernel.map(stat);
  const kernelsMs = times.reduce((a, b) => a + b, 0);
  const rate = (ms: number, flops: number | null, bytes: number, share: number): Rated => ({
    ms,
    share,
    flops,
    bytes,
    gflops_per_s: flops !== null && ms > 0 ? flops / ms / 1e6 : null,
    gb_per_s: ms > 0 ? bytes / ms / 1e6 : 0,
  });
  const share = (ms: number) => (kernelsMs > 0 ? ms / kernelsMs : 0);
  const kprof: KernelProfile[] = facts.map((f, i) => ({ ...f, ...rate(times[i], f.flops, f.bytes, share(times[i])) }));
  const byOp = new Map<string, KernelProfile[]>();
  for (const k of kprof) byOp.set(k.op, [...(byOp.get(k.op) ?? []), k]);
  const ops: OpProfile[] = [...byOp].map(([op, ks]) => {
    const ms = ks.reduce((s, k) => s + k.ms, 0);
    const flops = ks.some((k) => k.flops !== null) ? ks.reduce((s, k) => s + (k.flops ?? 0), 0) : null;
    return { op, count: ks.length, ...rate(ms, flops, ks.reduce((s, k) => s + k.bytes, 0), share(ms)) };
  });
  ops.sort((a, b) => b.ms - a.ms);
  const stepMs = median(step);
  return {
    schedule,
    model: p.program.model,
    policy: p.program.policy,
    batch: p.program.batch,
    adapter: prog.gpu.adapterName,
    method: timer ? 'timestamp-query' : 'submit-per-kernel',
    statistic,
    timestamp_quantum_ns: q,
    warmup,
    reps,
    ops,
    kernels: kprof,
    total: { kernels_ms: kernelsMs, step_ms: stepMs, step_device_ms: stepDevice.length ? stat(stepDevice) : null, overhead_ms: stepMs - kernelsMs },
  };
}

/** Loads an output folder, fills its inputs with deterministic data and profiles a schedule. */
export async function profileDir(dir: string, opts: ProfileOptions = {}): Promise<Profile> {
  const p = loadProgram(dir);
  const schedule = opts.schedule ?? 'train';
  try {
    irOf(p, schedule);
  } catch (e) {
    throw new InputError(`${dir}: damaged mpc output folder (${(e as Error).message.split('\n')[0]}); compile it again`);
  }
  const prog = await openProgram(p);
  try {
    fillInputs(prog, p, schedule);
    return await profileSchedule(prog, p, opts);
  } finally {
    prog.destroy();
  }
}

// ---- text form --------------------------------------------------------------------------

function fit(s: string, w: number): string {
  if (s.length <= w) return s.padEnd(w);
  const keep = w - 1;
  const head = Math.ceil(keep / 2);
  return `${s.slice(0, head)}…${s.slice(s.length - (keep - head))}`;
}

const num = (x: number, digits: number, w: number) => x.toFixed(digits).padStart(w);

/** Three significant figures or so, dropping to the next smaller unit below 0.01. */
function rateText(r: Rated): string {
  const show = (x: number, unit: string, small: string) => {
    if (x > 0 && x < 0.01) x *= 1000, (unit = small);
    return `${x.toFixed(x >= 100 ? 0 : x >= 10 ? 1 : 2)} ${unit}`;
  };
  return r.gflops_per_s !== null ? show(r.gflops_per_s, 'GFLOP/s', 'MFLOP/s') : show(r.gb_per_s, 'GB/s', 'MB/s');
}

/** The profile as text: by op type, the top kernels, the totals (within 100 columns). */
export function formatProfile(pr: Profile, opts: { top?: number } = {}): string {
  const top = opts.top ?? 10;
  const q = pr.timestamp_quantum_ns;
  const how =
    pr.method === 'timestamp-query'
      ? `device timestamps, one pass per kernel${q !== null && q > 1 ? `, quantized to ${(q / 1000).toFixed(1)} µs` : ''}`
      : 'wall clock, one submit and wait per kernel (host overhead included)';
  const stat = pr.statistic === 'median' ? 'median' : 'mean of the readings within 2 quanta of the median';
  const L: string[] = [
    `profile of the ${pr.schedule} schedule: ${pr.model}, policy ${pr.policy}, batch ${pr.batch}, ${pr.kernels.length} kernels`,
    `on ${pr.adapter}`,
    `timing: ${how}`,
    `        ${stat}, ${pr.reps} reps after ${pr.warmup} warm-up`,
    '',
    `${'op'.padEnd(32)} ${'count'.padStart(5)} ${'time ms'.padStart(10)} ${'share %'.padStart(8)}  rate`,
  ];
  for (const o of pr.ops) L.push(`${fit(o.op, 32)} ${String(o.count).padStart(5)} ${num(o.ms, 3, 10)} ${num(100 * o.share, 1, 8)}  ${rateText(o)}`);
  const slow = [...pr.kernels].sort((a, b) => b.ms - a.ms).slice(0, top);
  // Identical kernels share a file (named after the first of them): the node tells them apart.
  const file = (f: string) => (f.length <= 14 ? f.padEnd(14) : `${f.slice(0, 13)}…`);
  L.push('', `top ${slow.length} kernels`, `${'#'.padStart(4)} ${'kernel file'.padEnd(14)} ${'node'.padEnd(30)} ${'op'.padEnd(18)} ${'time ms'.padStart(9)} ${'share %'.padStart(7)}  rate`);
  for (const k of slow)
    L.push(`${String(k.index).padStart(4)} ${file(k.file)} ${fit(k.node, 30)} ${fit(k.op, 18)} ${num(k.ms, 3, 9)} ${num(100 * k.share, 1, 7)}  ${rateText(k)}`);
  const t = pr.total;
  const pct = t.step_ms > 0 ? (100 * t.overhead_ms) / t.step_ms : 0;
  L.push(
    '',
    `sum of kernels ${num(t.kernels_ms, 3, 10)} ms`,
    `whole step     ${num(t.step_ms, 3, 10)} ms  (one submit of ${pr.kernels.length} dispatches, to completion` +
      (t.step_device_ms !== null ? `; ${t.step_device_ms.toFixed(3)} ms on the device)` : ')'),
    `difference     ${num(t.overhead_ms, 3, 10)} ms  ` +
      (t.overhead_ms >= 0 ? `(${pct.toFixed(1)}% of the step: dispatch, submit and wait overhead)` : '(none visible: the kernels cost more timed apart)'),
  );
  return L.join('\n') + '\n';
}
