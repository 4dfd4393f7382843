// A kernel is data: the WGSL text plus what the host needs to dispatch it.
export interface KernelBinding {
  /** Name of the program buffer bound at @group(0) @binding(index in the list). */
  name: string;
  access: 'read' | 'read_write';
}

export interface Kernel {
  name: string;
  wgsl: string;
  workgroupSize: [number, number, number];
  /** Number of workgroups per dimension. */
  dispatch: [number, number, number];
  bindings: KernelBinding[];
  /**
   * Bound buffers the kernel needs zeroed (atomic accumulators): the runtime clears them at
   * the start of every run of the schedule (a buffer clear, not a dispatch), and no earlier
   * kernel of the schedule may write them.
   */
  clear?: string[];
}

/** Target capabilities that change the WGSL we emit. */
export interface Target {
  /** `shader-f16` available: f16 values stored as array<f16> instead of packed in u32. */
  f16: boolean;
  /**
   * The device's fixed subgroup size, when kernels may use subgroup operations (the GEMM's
   * fast variant). A program compiled for one size runs only on devices with that size.
   */
  subgroupSize?: number;
}

export const MAX_WORKGROUPS_PER_DIM = 65535;

/** Spreads `groups` workgroups over x (and y when x would exceed the per-dimension limit). */
export function dispatch1d(groups: number): [number, number, number] {
  if (groups <= MAX_WORKGROUPS_PER_DIM) return [Math.max(1, groups), 1, 1];
  const y = Math.ceil(groups / MAX_WORKGROUPS_PER_DIM);
  return [Math.ceil(groups / y), y, 1];
}
