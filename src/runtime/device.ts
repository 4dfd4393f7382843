// WebGPU device acquisition for Node (Dawn through the npm `webgpu` package).
//
// Two things about Dawn in Node shape this file:
// - The object returned by `create()` must stay reachable for the life of the process:
//   when it is garbage-collected, the process crashes or hangs. It is kept in a
//   module-level variable and never released.
// - The Vulkan loader (and Mesa's lavapipe) read the environment when the instance is
//   created, so XDG_RUNTIME_DIR is fixed up before `webgpu` is even loaded.

import { mkdtempSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface GpuLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxStorageBuffersPerShaderStage: number;
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupSizeX: number;
  maxComputeWorkgroupSizeY: number;
  maxComputeWorkgroupSizeZ: number;
  maxComputeWorkgroupsPerDimension: number;
}

export interface Gpu {
  device: GPUDevice;
  /** Human-readable adapter description, e.g. "llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)". */
  adapterName: string;
  /** True when the device was created with the `shader-f16` feature. */
  hasF16: boolean;
  /**
   * The subgroup size when the device was created with the `subgroups` feature and the
   * adapter reports one fixed size (lavapipe: its SIMD width, 8 with AVX2); otherwise
   * undefined. Kernels specialised on it (the GEMM) need exactly this size.
   */
  subgroupSize?: number;
  /** The limits the device was created with (the adapter's maxima for these). */
  limits: GpuLimits;
}

export class GpuUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GpuUnavailableError';
  }
}

const NO_ADAPTER_MESSAGE =
  'no WebGPU adapter found: install Mesa >= 25 (lavapipe, e.g. mesa-vulkan-drivers from ' +
  'bookworm-backports; see scripts/setup-debian.sh) or a GPU Vulkan driver, or run with --backend cpu';

const LIMIT_NAMES: (keyof GpuLimits)[] = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
];

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
  dawnInstance = mod.create([]);
  return dawnInstance;
}

async function openGpu(wantF16: boolean): Promise<Gpu> {
  const instance = await dawn();
  const adapter = await instance.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new GpuUnavailableError(NO_ADAPTER_MESSAGE);

  const hasF16 = wantF16 && adapter.features.has('shader-f16');
  const info = adapter.info;
  const sgMin = info.subgroupMinSize ?? 0;
  const fixedSubgroup = adapter.features.has('subgroups') && sgMin > 0 && sgMin === info.subgroupMaxSize;
  const features: GPUFeatureName[] = [];
  if (hasF16) features.push('shader-f16');
  if (fixedSubgroup) features.push('subgroups');
  if (adapter.features.has('timestamp-query')) features.push('timestamp-query');
  const requiredLimits: Record<string, number> = {};
  const limits = {} as GpuLimits;
  for (const name of LIMIT_NAMES) {
    const value = adapter.limits[name];
    requiredLimits[name] = value;
    limits[name] = value;
  }
  const device = await adapter.requestDevice({
    requiredFeatures: features,
    requiredLimits,
  });
  const adapterName = info.description || [info.vendor, info.architecture, info.device].filter(Boolean).join(' ') || 'unknown adapter';
  return { device, adapterName, hasF16, limits, ...(fixedSubgroup ? { subgroupSize: sgMin } : {}) };
}

/**
 * The process-wide WebGPU device. Cached: every call with the same `f16` option returns
 * the same device. A failed attempt is not cached, so a later call retries.
 */
export function getGpu(opts: { f16?: boolean } = {}): Promise<Gpu> {
  const wantF16 = opts.f16 ?? true;
  let entry = gpuCache.get(wantF16);
  if (!entry) {
    entry = openGpu(wantF16);
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

/** Compile a shader module and throw with the compiler's messages if it has errors. */
export async function compileShader(device: GPUDevice, wgsl: string, label?: string): Promise<GPUShaderModule> {
  const module = device.createShaderModule({ code: wgsl, ...(label ? { label } : {}) });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === 'error');
  if (errors.length > 0) {
    const lines = errors.map((m) => `${label ?? 'shader'}:${m.lineNum}:${m.linePos}: ${m.message}`);
    throw new Error(`WGSL compilation failed:\n${lines.join('\n')}`);
  }
  return module;
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
