// Compile options as the CLI and the library see them, with the defaults in one place.
import { makePolicy, type ClassOverride } from '../ir/policy.js';
import type { Fp8Config, LossKind, LossScaleConfig, OptimizerConfig, PassCtx } from '../passes/pass.js';
import type { Target } from '../codegen/kernel.js';
import type { Tensor } from '../ir/tensor.js';

export interface CompileOptions {
  policy: string;
  overrides?: ClassOverride[];
  batch?: number;
  dims?: Record<string, number>;
  loss?: LossKind;
  optimizer?: Partial<OptimizerConfig> & { kind?: OptimizerConfig['kind'] };
  /** 'dynamic' | 'none' | 'static:N'; default from the policy. */
  lossScale?: string;
  growthInterval?: number;
  fp8?: Partial<Fp8Config>;
  /** fp8 policy: the type of everything that is not an fp8 GEMM operand (default bf16). */
  fp8High?: 'bf16' | 'f16';
  target?: Partial<Target>;
  /** false: one device allocation per buffer instead of the memory plan (default true). */
  planMemory?: boolean;
  /** false: one kernel per node instead of fusing elementwise chains (default true). */
  fuse?: boolean;
  /** Globs (`*`, `?`) of the initializers to train; the others stay fixed (default: all). */
  train?: string[];
  /** Globs of initializers to keep fixed. */
  freeze?: string[];
  /** Graph inputs bound to fixed contents at compile time (`--const NAME=FILE.npy`). */
  consts?: Record<string, Tensor>;
  /** Initial values by ONNX initializer name (`--weights FILE.safetensors`), e.g. trained weights to fine-tune. */
  weights?: string;
}

export const FP8_DEFAULTS: Fp8Config = { scaling: 'delayed', amax: 'max', history: 16, margin: 0 };

export const DEFAULT_BATCH = 128;

export const OPTIMIZER_DEFAULTS: Record<OptimizerConfig['kind'], OptimizerConfig> = {
  sgd: { kind: 'sgd', lr: 0.05, momentum: 0.9, beta1: 0, beta2: 0, eps: 0, weightDecay: 0 },
  adam: { kind: 'adam', lr: 1e-3, momentum: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 },
  adamw: { kind: 'adamw', lr: 1e-3, momentum: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 },
};

/** GradScaler's defaults. */
export const DYNAMIC_SCALE = { init: 2 ** 16, growthInterval: 2000, growthFactor: 2, backoffFactor: 0.5 };

export function parseLossScale(s: string, growthInterval?: number): LossScaleConfig {
  if (s === 'none') return { kind: 'none' };
  if (s === 'dynamic') return { kind: 'dynamic', ...DYNAMIC_SCALE, growthInterval: growthInterval ?? DYNAMIC_SCALE.growthInterval };
  const m = /^static:([0-9.eE+-]+)$/.exec(s);
  if (m && Number(m[1]) > 0 && Number.isFinite(Number(m[1]))) return { kind: 'static', scale: Number(m[1]) };
  throw new Error(`--loss-scale must be dynamic, none or static:N (N > 0), got '${s}'`);
}

export function passCtx(o: CompileOptions): PassCtx {
  let policy = makePolicy(o.policy, o.overrides);
  if (o.fp8High === 'f16') {
    if (!policy.fp8) throw new Error('--fp8-high applies to the fp8 policy only');
    policy = { ...policy, low: 'f16', lossScale: 'dynamic' };
  }
  const fp8 = { ...FP8_DEFAULTS, ...stripUndefined(o.fp8 ?? {}) };
  if (!Number.isInteger(fp8.history) || fp8.history < 1) throw new Error('--fp8-history must be a positive integer');
  if (!Number.isInteger(fp8.margin) || fp8.margin < 0) throw new Error('--fp8-margin must be a non-negative integer');
  const kind = o.optimizer?.kind ?? 'adam';
  const optimizer = { ...OPTIMIZER_DEFAULTS[kind], ...stripUndefined(o.optimizer ?? {}) } as OptimizerConfig;
  return {
    policy,
    batch: o.batch ?? DEFAULT_BATCH,
    dims: o.dims ?? {},
    loss: o.loss ?? 'cross_entropy',
    optimizer,
    lossScale: parseLossScale(o.lossScale ?? policy.lossScale, o.growthInterval),
    fp8,
    target: { f16: true, ...stripUndefined(o.target ?? {}) },
    ...(o.train?.length ? { train: o.train } : {}),
    ...(o.freeze?.length ? { freeze: o.freeze } : {}),
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
