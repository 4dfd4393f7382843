// WebGPU device set-up shared by Node (Dawn, device.ts) and the browser page (navigator.gpu):
// no Node modules here, so the runtime copied next to a compiled program can use it in both.
import { GpuUnavailableError } from './errors.js';

export { GpuUnavailableError };

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

/**
 * A device on `instance`'s adapter with the features and limits mpc's kernels use: shader-f16
 * when wanted and offered, subgroups when the adapter has one fixed size, timestamp queries,
 * and the adapter's maximal limits. `noAdapter` is the message when there is no adapter.
 */
export async function openDevice(instance: GPU, wantF16: boolean, noAdapter: string): Promise<Gpu> {
  const adapter = await instance.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new GpuUnavailableError(noAdapter);

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
