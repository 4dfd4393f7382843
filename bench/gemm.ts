// GEMM section: our generated GEMM kernel at 1024³ (f32, f16 and bf16 operands) against two
// peers measured in the same run on the same device: a plain one-thread-per-output WGSL
// GEMM (written below) and onnxruntime-node's WebGPU execution provider (a one-node MatMul
// model built in memory). Every contender's output is spot-checked against an f64 product
// before it is timed.
import { emitGemm, chooseVariant, type GemmVariant } from '../src/codegen/kernels/gemm.js';
import { bufferBytes, layoutOf } from '../src/codegen/storage.js';
import { floatInfo, roundArray, type FloatDType } from '../src/ir/dtypes.js';
import { compileShader, getGpu, type Gpu } from '../src/runtime/device.js';
import { packValues, unpackValues } from '../src/runtime/layout-io.js';
import { registerSection, type SectionContext } from './registry.js';
import { fmt, submitAndWait, timeRoundRobin, type Contender } from './timing.js';

const SIZE = 1024;
const FLOPS = 2 * SIZE * SIZE * SIZE;
const CHECK_POINTS = 48;

interface Problem {
  /** Values of A and B ([SIZE, SIZE] each, row-major) rounded to `dtype`. */
  a: Float32Array;
  b: Float32Array;
  dtype: FloatDType;
}

interface Prepared extends Contender {
  dtype: FloatDType;
  /** Output values (logical, as f32) of one run, for the spot check. */
  output: () => Promise<Float32Array>;
}

export function randomValues(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    v[i] = s / 2 ** 31 - 1;
  }
  return v;
}

function problem(dtype: FloatDType, base: { a: Float32Array; b: Float32Array }): Problem {
  return { dtype, a: roundArray(dtype, base.a), b: roundArray(dtype, base.b) };
}

/**
 * Max over sample points of |got - exact| / bound, bound = 2^-p·|exact| + 1e-6·Σ|products|
 * (p: the output's mantissa bits, at most 16): twice the rounding to the output format
 * plus room for f32 accumulation. ok: within the bound.
 */
function spotCheck(p: Problem, got: Float32Array, outDtype: FloatDType): { ok: boolean; worst: number } {
  let worst = 0;
  const eps = 2 ** -Math.min(floatInfo(outDtype).mantBits, 16);
  for (let t = 0; t < CHECK_POINTS; t++) {
    const m = (t * 7919) % SIZE;
    const n = (t * 104729 + 17) % SIZE;
    let s = 0;
    let mag = 0;
    for (let k = 0; k < SIZE; k++) {
      const prod = p.a[m * SIZE + k] * p.b[k * SIZE + n];
      s += prod;
      mag += Math.abs(prod);
    }
    const err = Math.abs(got[m * SIZE + n] - s) / (eps * Math.max(Math.abs(s), 1e-6) + 1e-6 * mag);
    worst = Math.max(worst, err);
  }
  return { ok: worst <= 1, worst };
}

export function storageBuffer(device: GPUDevice, data: Uint8Array<ArrayBuffer> | number): GPUBuffer {
  const size = typeof data === 'number' ? data : data.byteLength;
  const buffer = device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
  if (typeof data !== 'number') device.queue.writeBuffer(buffer, 0, data);
  return buffer;
}

export async function readBack(device: GPUDevice, buffer: GPUBuffer): Promise<Uint8Array> {
  const staging = device.createBuffer({ size: buffer.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  await submitAndWait(device, (e) => e.copyBufferToBuffer(buffer, 0, staging, 0, buffer.size));
  await staging.mapAsync(GPUMapMode.READ);
  const bytes = new Uint8Array(staging.getMappedRange().slice(0));
  staging.unmap();
  staging.destroy();
  return bytes;
}

/** Compiles `wgsl` over `buffers` bound in order; returns a function that runs one dispatch to completion. */
export async function dispatcher(device: GPUDevice, wgsl: string, name: string, buffers: GPUBuffer[], workgroups: [number, number, number]): Promise<() => Promise<void>> {
  const module = await compileShader(device, wgsl, name);
  const pipeline = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  return () =>
    submitAndWait(device, (e) => {
      const pass = e.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(...workgroups);
      pass.end();
    });
}

/** A compute pipeline over buffers bound in order, as a timed contender. */
async function gpuContender(
  gpu: Gpu,
  name: string,
  p: Problem,
  spec: { wgsl: string; workgroups: [number, number, number]; storage: 'layout' | 'f32' },
): Promise<Prepared> {
  const { device } = gpu;
  const target = { f16: gpu.hasF16 };
  const layout = spec.storage === 'f32' ? layoutOf('f32', target) : layoutOf(p.dtype, target);
  const dtype = spec.storage === 'f32' ? 'f32' : p.dtype;
  const bytes = bufferBytes(layout, SIZE * SIZE);
  const buffers = [
    storageBuffer(device, packValues(dtype, layout, p.a, bytes)),
    storageBuffer(device, packValues(dtype, layout, p.b, bytes)),
    storageBuffer(device, bytes),
  ];
  const run = await dispatcher(device, spec.wgsl, name, buffers, spec.workgroups);
  return {
    name,
    dtype,
    run,
    output: async () => {
      await run();
      return unpackValues(dtype, layout, await readBack(device, buffers[2]), SIZE * SIZE) as Float32Array;
    },
  };
}

async function oursContender(gpu: Gpu, p: Problem, variant?: GemmVariant): Promise<Prepared> {
  const target = { f16: gpu.hasF16, ...(gpu.subgroupSize ? { subgroupSize: gpu.subgroupSize } : {}) };
  const used = variant ?? chooseVariant({ N: SIZE, target }, layoutOf(p.dtype, target).perWord);
  const kernel = emitGemm({
    name: `gemm_${p.dtype}`,
    M: SIZE,
    N: SIZE,
    K: SIZE,
    a: { buffer: 'A', dtype: p.dtype },
    b: { buffer: 'B', dtype: p.dtype },
    out: { buffer: 'Y', dtype: p.dtype },
    target,
    variant: used,
  });
  return gpuContender(gpu, `mpc ${p.dtype} (${used})`, p, { wgsl: kernel.wgsl, workgroups: kernel.dispatch, storage: 'layout' });
}

/** The reference peer: one invocation per output element, a plain loop over k. */
function naiveWgsl(): string {
  return `@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x;
  let m = gid.y;
  if (m >= ${SIZE}u || n >= ${SIZE}u) { return; }
  var sum = 0.0;
  for (var k = 0u; k < ${SIZE}u; k = k + 1u) {
    sum = sum + a[m * ${SIZE}u + k] * b[k * ${SIZE}u + n];
  }
  c[m * ${SIZE}u + n] = sum;
}
`;
}

// ---- onnxruntime-node, WebGPU execution provider --------------------------------------

type Ort = typeof import('onnxruntime-node');

async function loadOrt(): Promise<Ort> {
  const mod = (await import('onnxruntime-node')) as Ort & { default?: Ort };
  return mod.default ?? mod;
}

/** A one-node MatMul model, serialised. */
async function matmulModel(elemType: number): Promise<Uint8Array> {
  const { onnx } = (await import('onnx-proto')).default;
  const shape = { dim: [{ dimValue: SIZE }, { dimValue: SIZE }] };
  const value = (name: string) => ({ name, type: { tensorType: { elemType, shape } } });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'mpc-bench',
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'matmul',
      node: [{ opType: 'MatMul', input: ['A', 'B'], output: ['Y'], name: 'matmul' }],
      input: [value('A'), value('B')],
      output: [value('Y')],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

function f16Bits(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  const view = new DataView(new ArrayBuffer(4));
  for (let i = 0; i < values.length; i++) {
    // values are already f16-rounded: rebuild the half-precision bits from the f32 bits.
    view.setFloat32(0, values[i], true);
    const b = view.getUint32(0, true);
    const sign = (b >>> 16) & 0x8000;
    const exp = ((b >>> 23) & 0xff) - 127 + 15;
    const mant = b & 0x7fffff;
    if ((b & 0x7fffffff) === 0) out[i] = sign;
    else if (exp <= 0) out[i] = sign | ((mant | 0x800000) >>> (14 - exp));
    else out[i] = sign | (exp << 10) | (mant >>> 13);
  }
  return out;
}

function fromF16Bits(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i];
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    const v = e === 0 ? m * 2 ** -24 : e === 31 ? (m ? NaN : Infinity) : (1 + m / 1024) * 2 ** (e - 15);
    out[i] = h & 0x8000 ? -v : v;
  }
  return out;
}

async function ortContender(ort: Ort, p: Problem): Promise<Prepared> {
  const isF16 = p.dtype === 'f16';
  const session = await ort.InferenceSession.create(await matmulModel(isF16 ? 10 : 1), { executionProviders: ['webgpu'] });
  const tensor = (v: Float32Array) =>
    isF16 ? new ort.Tensor('float16', f16Bits(v), [SIZE, SIZE]) : new ort.Tensor('float32', v, [SIZE, SIZE]);
  const feeds = { A: tensor(p.a), B: tensor(p.b) };
  let last: Float32Array | undefined;
  const run = async () => {
    const r = await session.run(feeds);
    const y = r['Y'].data as Float32Array | Uint16Array;
    last = y instanceof Uint16Array ? fromF16Bits(y) : y;
  };
  return {
    name: `onnxruntime webgpu ${p.dtype}`,
    dtype: p.dtype,
    run,
    output: async () => {
      await run();
      return last!;
    },
  };
}

// ---- the section ------------------------------------------------------------------------

async function gemmSection(ctx: SectionContext): Promise<void> {
  const gpu = await getGpu();
  ctx.log(`device: ${gpu.adapterName}; subgroup size ${gpu.subgroupSize ?? 'not fixed'}; shader-f16 ${gpu.hasF16 ? 'yes' : 'no'}`);
  const base = { a: randomValues(SIZE * SIZE, 1), b: randomValues(SIZE * SIZE, 2) };
  const f32 = problem('f32', base);
  const dtypes: FloatDType[] = gpu.hasF16 ? ['f32', 'f16', 'bf16'] : ['f32', 'bf16'];

  const prepared: Prepared[] = [];
  const unavailable: { name: string; reason: string }[] = [];
  const naive = await gpuContender(gpu, 'reference naive WGSL f32', f32, { wgsl: naiveWgsl(), workgroups: [SIZE / 8, SIZE / 8, 1], storage: 'f32' });
  prepared.push(naive);
  for (const d of dtypes) prepared.push(await oursContender(gpu, d === 'f32' ? f32 : problem(d, base)));
  if (gpu.subgroupSize) prepared.push(await oursContender(gpu, f32, 'blocked'));

  let ortF32: Prepared | undefined;
  try {
    const ort = await loadOrt();
    for (const d of ['f32', 'f16'] as const) {
      try {
        const c = await ortContender(ort, d === 'f32' ? f32 : problem(d, base));
        prepared.push(c);
        if (d === 'f32') ortF32 = c;
      } catch (e) {
        unavailable.push({ name: `onnxruntime webgpu ${d}`, reason: (e as Error).message.split('\n')[0] });
      }
    }
  } catch (e) {
    unavailable.push({ name: 'onnxruntime webgpu', reason: `cannot load onnxruntime-node: ${(e as Error).message.split('\n')[0]}` });
  }

  // Correctness first. A result outside the bound (f32 accumulation, one rounding to the
  // output format) is flagged; one that is far outside (broken, not merely less precise,
  // e.g. a peer that accumulates in f16) is not timed.
  const checked: Prepared[] = [];
  const verdict = new Map<string, string>();
  for (const c of prepared) {
    const prob = c.dtype === 'f32' ? f32 : problem(c.dtype, base);
    const { ok, worst } = spotCheck(prob, await c.output(), c.dtype);
    if (!(worst < 1e4)) unavailable.push({ name: c.name, reason: `wrong result (error ${fmt(worst)} x the bound)` });
    else {
      checked.push(c);
      verdict.set(c.name, ok ? 'ok' : `err ${fmt(worst, 1)}x bound`);
    }
  }

  const timings = await timeRoundRobin(checked, { warmup: 0, minRounds: 2, maxRounds: 5, budgetMs: 30_000 });
  const byName = new Map(timings.map((t) => [t.name, t]));
  const gflops = (ms: number) => FLOPS / (ms * 1e6);
  const naiveMs = byName.get(naive.name)?.medianMs;
  const ortMs = ortF32 ? byName.get(ortF32.name)?.medianMs : undefined;
  for (const t of timings) {
    ctx.report(t.name, {
      'median ms': fmt(t.medianMs, 1),
      'GFLOP/s': fmt(gflops(t.medianMs)),
      'best GFLOP/s': fmt(gflops(t.minMs)),
      'x naive': naiveMs ? `${fmt(naiveMs / t.medianMs)}x` : 'n/a',
      'x ort f32': ortMs ? `${fmt(ortMs / t.medianMs)}x` : 'n/a',
      runs: t.samplesMs.length,
      check: verdict.get(t.name) ?? '',
    });
  }
  for (const u of unavailable) {
    ctx.report(u.name, { 'median ms': 'n/a' });
    ctx.note(`${u.name}: n/a: ${u.reason}`);
  }
  ctx.note(`${SIZE}x${SIZE}x${SIZE}, ${FLOPS / 1e9} GFLOP per run; timed round-robin, medians; ratios are peer time / contender time.`);
  ctx.note('onnxruntime runs include host-to-device copies of A and B and the copy of Y back (12 MiB for f32).');
  ctx.note('check: sampled outputs vs an f64 product; bound = 2^-mantissa(out) * |exact| + 1e-6 * sum |products|.');
}

registerSection('gemm', gemmSection, 'generated GEMM kernel vs a naive WGSL GEMM and onnxruntime WebGPU, 1024³');
