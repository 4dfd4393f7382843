// A compiled program on a WebGPU device: its allocations (the memory plan places every
// logical buffer in one, at its byte offset), one pipeline per distinct kernel file, one bind
// group per kernel, and schedules encoded as a single compute pass.
import { sizeOf, type Tensor } from '../ir/tensor.js';
import type { ProgramBuffer, ProgramKernel, Schedule } from '../codegen/program.js';
import { compileShader, type Gpu } from './gpu.js';
import { packValues, unpackValues } from './layout-io.js';

export interface ProgramSpec {
  buffers: ProgramBuffer[];
  /** Bytes of each device allocation; ProgramBuffer.alloc points into it. */
  allocations: number[];
  kernels: ProgramKernel[];
  schedules: Record<string, Schedule>;
  /** WGSL text of each kernel file. */
  files: Map<string, string>;
}

/**
 * Compute pipelines by WGSL text, per device, for the life of the process: programs loaded one
 * after another (a model compiled under several policies, evaluation next to training) share
 * the kernels whose text is identical instead of building them again. Pipelines are immutable;
 * bind groups are made per program from the pipeline's layout. Bounded, least recently used
 * first out.
 */
const PIPELINES = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline>>>();
const PIPELINE_CACHE_SIZE = 4096;

function pipelineFor(device: GPUDevice, wgsl: string, label: string): Promise<GPUComputePipeline> {
  let cache = PIPELINES.get(device);
  if (!cache) PIPELINES.set(device, (cache = new Map()));
  let p = cache.get(wgsl);
  if (p) {
    cache.delete(wgsl); // most recently used last
    cache.set(wgsl, p);
    return p;
  }
  p = compileShader(device, wgsl, label).then((module) => device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } }));
  // A failed build is not kept: the next program reports it again.
  p.catch(() => cache!.delete(wgsl));
  cache.set(wgsl, p);
  if (cache.size > PIPELINE_CACHE_SIZE) cache.delete(cache.keys().next().value!);
  return p;
}

export class GpuProgram {
  private constructor(
    readonly gpu: Gpu,
    readonly spec: ProgramSpec,
    /** Device allocations (several logical buffers may share one). */
    readonly allocations: GPUBuffer[],
    private readonly pipelines: GPUComputePipeline[],
    private readonly bindGroups: GPUBindGroup[],
  ) {}

  static async create(gpu: Gpu, spec: ProgramSpec): Promise<GpuProgram> {
    const { device } = gpu;
    const needsF16 = spec.buffers.some((b) => b.layout.elem === 'f16');
    if (needsF16 && !gpu.hasF16)
      throw new Error(`this program stores f16 natively, but the adapter (${gpu.adapterName}) lacks shader-f16: recompile with --f16-storage packed`);
    device.pushErrorScope('validation');
    device.pushErrorScope('out-of-memory');
    const names = new Map<number, string>();
    for (const b of spec.buffers) if (!names.has(b.alloc)) names.set(b.alloc, b.name);
    const label = (a: number) => names.get(a) ?? `alloc ${a}`;
    const allocations = spec.allocations.map((bytes, a) =>
      device.createBuffer({ label: label(a), size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST }),
    );
    const byFile = new Map<string, GPUComputePipeline>();
    // All builds requested at once: the device may compile them side by side.
    const built = await Promise.all([...spec.files].map(([file, wgsl]) => pipelineFor(device, wgsl, file)));
    [...spec.files.keys()].forEach((file, i) => byFile.set(file, built[i]));
    const pipelines = spec.kernels.map((k) => byFile.get(k.file)!);
    // One layout object per pipeline, not one per dispatch (a program binds each kernel many times).
    const layouts = new Map<GPUComputePipeline, GPUBindGroupLayout>();
    const layoutOf = (p: GPUComputePipeline) => layouts.get(p) ?? layouts.set(p, p.getBindGroupLayout(0)).get(p)!;
    const bindGroups = spec.kernels.map((k, i) =>
      device.createBindGroup({
        label: k.name,
        layout: layoutOf(pipelines[i]),
        entries: k.bindings.map((b, j) => ({ binding: j, resource: { buffer: allocations[spec.buffers[b.buffer].alloc], offset: spec.buffers[b.buffer].offset ?? 0, size: spec.buffers[b.buffer].bytes } })),
      }),
    );
    const oom = await device.popErrorScope();
    const validation = await device.popErrorScope();
    const err = validation ?? oom;
    if (err) {
      for (const b of allocations) b.destroy();
      throw new Error(`WebGPU error while loading the program: ${err.message}`);
    }
    return new GpuProgram(gpu, spec, allocations, pipelines, bindGroups);
  }

  bufferIndex(name: string): number {
    const i = this.spec.buffers.findIndex((b) => b.name === name);
    if (i < 0) throw new Error(`program has no buffer '${name}'`);
    return i;
  }

  /** The device allocation of a buffer; fails for a value the program never stores (fused away). */
  private allocation(buffer: number): GPUBuffer {
    const b = this.spec.buffers[buffer];
    if (b.alloc < 0) throw new Error(`'${b.name}' is never stored on the device (computed inside a fused kernel); compile with it kept to read it`);
    return this.allocations[b.alloc];
  }

  /** Writes logical values (converted to the buffer's layout). */
  write(buffer: number, values: ArrayLike<number>): void {
    const b = this.spec.buffers[buffer];
    const n = sizeOf(b.shape);
    if (values.length !== n) throw new Error(`buffer '${b.name}' holds ${n} values, got ${values.length}`);
    const bytes = packValues(b.dtype, b.layout, values, b.bytes);
    this.gpu.device.queue.writeBuffer(this.allocation(buffer), b.offset ?? 0, bytes);
  }

  /**
   * Encodes every kernel of a schedule, `times` over, in one compute pass, and submits. Its
   * outputs hold their values until the next run of any schedule (they share memory with
   * that run's values): read them before running again.
   */
  run(schedule: string, times = 1): void {
    const s = this.spec.schedules[schedule];
    if (!s) throw new Error(`program has no schedule '${schedule}'`);
    const enc = this.gpu.device.createCommandEncoder();
    // One compute pass per run, each after the clears its kernels expect (Schedule.clear).
    for (let t = 0; t < times; t++) {
      this.encodeClears(enc, schedule);
      const pass = enc.beginComputePass();
      this.encode(pass, s.kernels);
      pass.end();
    }
    this.gpu.device.queue.submit([enc.finish()]);
  }

  /** Records the zeroing of the buffers a run of `schedule` expects cleared at its start. */
  encodeClears(enc: GPUCommandEncoder, schedule: string): void {
    for (const b of this.spec.schedules[schedule]?.clear ?? []) enc.clearBuffer(this.allocation(b), this.spec.buffers[b].offset ?? 0, this.spec.buffers[b].bytes);
  }

  /** Zeroes now (one submission) what a run of `schedule` expects cleared: for the profiler, which records kernels apart. */
  clear(schedule: string): void {
    const enc = this.gpu.device.createCommandEncoder();
    this.encodeClears(enc, schedule);
    this.gpu.device.queue.submit([enc.finish()]);
  }

  /** Records the given kernels (indices into spec.kernels) into an open compute pass: for the profiler. */
  encode(pass: GPUComputePassEncoder, kernels: readonly number[]): void {
    for (const k of kernels) {
      pass.setPipeline(this.pipelines[k]);
      pass.setBindGroup(0, this.bindGroups[k]);
      const d = this.spec.kernels[k].dispatch;
      pass.dispatchWorkgroups(d[0], d[1], d[2]);
    }
  }

  /** Reads buffers back (one submission for all of them). */
  async read(buffers: number[]): Promise<Tensor[]> {
    const { device } = this.gpu;
    const enc = device.createCommandEncoder();
    const staging = buffers.map((i) => {
      const s = device.createBuffer({ size: this.spec.buffers[i].bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      enc.copyBufferToBuffer(this.allocation(i), this.spec.buffers[i].offset ?? 0, s, 0, this.spec.buffers[i].bytes);
      return s;
    });
    device.queue.submit([enc.finish()]);
    const out: Tensor[] = [];
    for (const [k, i] of buffers.entries()) {
      const s = staging[k];
      await s.mapAsync(GPUMapMode.READ);
      const b = this.spec.buffers[i];
      const bytes = new Uint8Array(s.getMappedRange().slice(0));
      s.unmap();
      s.destroy();
      out.push({ dtype: b.dtype, shape: [...b.shape], data: unpackValues(b.dtype, b.layout, bytes, sizeOf(b.shape)) });
    }
    return out;
  }

  async sync(): Promise<void> {
    await this.gpu.device.queue.onSubmittedWorkDone();
  }

  destroy(): void {
    for (const b of this.allocations) b.destroy();
  }
}
