// WebGPU device acquisition for Node (Dawn through the npm `webgpu` package).
//
// Two things about Dawn in Node shape this file:
// - The object returned by `create()` must stay reachable for the life of the process:
//   when it is garbage-collected, the process crashes or hangs. It is kept in a
//   module-level variable and never released.
// - The Vulkan loader (and Mesa's lavapipe) read the environment when the instance is
//   created, so XDG_RUNTIME_DIR is fixed up before `webgpu` is even loaded.

import { chmodSync, closeSync, constants, mkdtempSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileShader, GpuUnavailableError, openDevice, type Gpu } from './gpu.js';

export { compileShader, GpuUnavailableError, openDevice };
export type { Gpu, GpuLimits } from './gpu.js';

const NO_ADAPTER_MESSAGE =
  'no WebGPU adapter found: install Mesa >= 25 (lavapipe, e.g. mesa-vulkan-drivers from ' +
  'bookworm-backports; see scripts/setup-debian.sh) or a GPU Vulkan driver, or run with --backend cpu';


/** The Dawn instance. Deliberately never cleared (see the note at the top). */
let dawnInstance: GPU | undefined;
const gpuCache = new Map<boolean, Promise<Gpu>>();

/** Point XDG_RUNTIME_DIR at a private 0700 directory if it is unset, so Mesa stays quiet. */
export function ensureXdgRuntimeDir(): void {
  if (process.env['XDG_RUNTIME_DIR']) return;
  const dir = mkdtempSync(join(tmpdir(), 'mpc-xdg-'));
  chmodSync(dir, 0o700);
  process.env['XDG_RUNTIME_DIR'] = dir;
}

async function dawn(): Promise<GPU> {
  if (dawnInstance) return dawnInstance;
  ensureXdgRuntimeDir();
  let mod: { create: (options: string[]) => GPU; globals: object };
  try {
    mod = (await import('webgpu')) as unknown as typeof mod;
  } catch (e) {
    throw new GpuUnavailableError(`cannot load the 'webgpu' package (${(e as Error).message}); run with --backend cpu`);
  }
  // GPUBufferUsage, GPUMapMode, GPUShaderStage... are globals in a browser.
  Object.assign(globalThis, mod.globals);
  // Dawn rounds timestamps down to 2^16 ns by default (a browser's timing-attack mitigation);
  // a profiler in Node wants the device's own nanoseconds, or a short kernel reads 0.
  dawnInstance = mod.create(['disable-dawn-features=timestamp_quantization']);
  return dawnInstance;
}

/**
 * Runs `f` with file descriptor 2 pointed at /dev/null, unless MPC_DEBUG is set. Dawn prints
 * start-up warnings about the adapter's limits (lavapipe: "maxDynamicUniformBuffersPerPipeline
 * Layout artificially reduced...") straight to fd 2, from native code, while requestAdapter
 * runs: they are not the user's business, and a failing command must print one line only.
 * Node has no dup2: fd 2 is reopened through /proc/self/fd (a tty or a pipe reopens as the same
 * one); where that cannot be done (no /proc, a socket), nothing is hidden.
 */
export function withQuietStderr<T>(f: () => T): T {
  if (process.env.MPC_DEBUG || process.platform !== 'linux') return f();
  const flags = constants.O_WRONLY | constants.O_APPEND | constants.O_NOCTTY;
  let saved: number;
  try {
    saved = openSync('/proc/self/fd/2', flags);
  } catch {
    return f();
  }
  let hidden = false;
  try {
    closeSync(2);
    // The lowest free descriptor is 2 again: it now points at /dev/null.
    const nul = openSync('/dev/null', constants.O_WRONLY);
    hidden = nul === 2;
    if (!hidden) closeSync(nul);
  } catch {
    /* restored below */
  }
  try {
    return f();
  } finally {
    try {
      if (hidden) closeSync(2);
      const back = openSync(`/proc/self/fd/${saved}`, flags);
      if (back !== 2) closeSync(back);
    } catch {
      /* stderr stays where it is */
    }
    closeSync(saved);
  }
}

/** `instance` whose requestAdapter (where Dawn prints its start-up warnings) runs with a quiet stderr. */
function quietAdapters(instance: GPU): GPU {
  return { requestAdapter: (o?: GPURequestAdapterOptions) => withQuietStderr(() => instance.requestAdapter(o)) } as unknown as GPU;
}

/**
 * The process-wide WebGPU device. Cached: every call with the same `f16` option returns
 * the same device. A failed attempt is not cached, so a later call retries.
 */
export function getGpu(opts: { f16?: boolean } = {}): Promise<Gpu> {
  const wantF16 = opts.f16 ?? true;
  let entry = gpuCache.get(wantF16);
  if (!entry) {
    entry = dawn().then((instance) => openDevice(quietAdapters(instance), wantF16, NO_ADAPTER_MESSAGE));
    entry.catch(() => gpuCache.delete(wantF16));
    gpuCache.set(wantF16, entry);
  }
  return entry;
}

export interface ComputeBuffer {
  /** Initial contents; without it the buffer is zero-filled with `bytes` bytes. */
  data?: ArrayBufferView;
  bytes?: number;
  access: 'read' | 'read_write';
}

function roundUp4(n: number): number {
  return Math.max(4, Math.ceil(n / 4) * 4);
}

/**
 * One-shot dispatch, meant for tests: binding i of group 0 is buffers[i]. Returns the
 * contents of each read_write buffer, in binding order (at the size that was asked for,
 * not the 4-byte-aligned size of the GPU buffer).
 */
export async function runCompute(
  gpu: Gpu,
  opts: { wgsl: string; entry?: string; workgroups: [number, number, number]; buffers: ComputeBuffer[] },
): Promise<ArrayBuffer[]> {
  const { device } = gpu;
  device.pushErrorScope('validation');
  device.pushErrorScope('out-of-memory');
  const module = await compileShader(device, opts.wgsl).catch(async (e: unknown) => {
    await device.popErrorScope();
    await device.popErrorScope();
    throw e;
  });
  const pipeline = device.createComputePipeline({
    layout: 'auto',
    compute: { module, ...(opts.entry ? { entryPoint: opts.entry } : {}) },
  });

  const created: { buffer: GPUBuffer; size: number; access: 'read' | 'read_write' }[] = [];
  for (const spec of opts.buffers) {
    const size = spec.data ? spec.data.byteLength : (spec.bytes ?? 0);
    const buffer = device.createBuffer({
      size: roundUp4(size),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      mappedAtCreation: spec.data !== undefined,
    });
    if (spec.data) {
      const src = new Uint8Array(spec.data.buffer, spec.data.byteOffset, spec.data.byteLength);
      new Uint8Array(buffer.getMappedRange()).set(src);
      buffer.unmap();
    }
    created.push({ buffer, size, access: spec.access });
  }

  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: created.map((c, i) => ({ binding: i, resource: { buffer: c.buffer } })),
  });
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(...opts.workgroups);
  pass.end();

  const readbacks: { staging: GPUBuffer; size: number }[] = [];
  for (const c of created) {
    if (c.access !== 'read_write') continue;
    const staging = device.createBuffer({
      size: roundUp4(c.size),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    encoder.copyBufferToBuffer(c.buffer, 0, staging, 0, roundUp4(c.size));
    readbacks.push({ staging, size: c.size });
  }
  device.queue.submit([encoder.finish()]);

  const oom = await device.popErrorScope();
  const validation = await device.popErrorScope();
  const failure = validation ?? oom;
  if (failure) {
    for (const c of created) c.buffer.destroy();
    for (const r of readbacks) r.staging.destroy();
    throw new Error(`WebGPU error: ${failure.message}`);
  }

  const results: ArrayBuffer[] = [];
  for (const r of readbacks) {
    await r.staging.mapAsync(GPUMapMode.READ);
    results.push(r.staging.getMappedRange().slice(0, r.size));
    r.staging.unmap();
    r.staging.destroy();
  }
  for (const c of created) c.buffer.destroy();
  return results;
}
