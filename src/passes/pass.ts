// The pass interface and the options every pass may read. A pass is a name, a pure
// function from graph to graph (the pipeline gives it its own copy), and the condition
// that must hold after it (checked by the tests through `check`).
import type { Graph } from '../ir/graph.js';
import type { Policy } from '../ir/policy.js';
import type { Target } from '../codegen/kernel.js';

export type LossKind = 'cross_entropy' | 'mse' | 'none';

export interface OptimizerConfig {
  kind: 'sgd' | 'adam' | 'adamw';
  lr: number;
  momentum: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export type LossScaleConfig =
  | { kind: 'none' }
  | { kind: 'static'; scale: number }
  | { kind: 'dynamic'; init: number; growthInterval: number; growthFactor: number; backoffFactor: number };

export interface Fp8Config {
  /** delayed: scale from the amax history of earlier steps; current: from this tensor. */
  scaling: 'delayed' | 'current';
  amax: 'max' | 'most_recent';
  history: number;
  margin: number;
}

export interface PassCtx {
  policy: Policy;
  /** Values for symbolic dimensions; `batch` binds every input's leading symbolic dimension. */
  batch?: number;
  dims: Record<string, number>;
  loss: LossKind;
  optimizer: OptimizerConfig;
  lossScale: LossScaleConfig;
  fp8: Fp8Config;
  target: Target;
  /** Globs of the parameters to train (default: all); see passes/select-params.ts. */
  train?: string[];
  /** Globs of parameters to keep fixed. */
  freeze?: string[];
}

export interface Pass {
  name: string;
  /** One line on what the pass does, for `mpc inspect --list-passes`. */
  doc: string;
  run(g: Graph, ctx: PassCtx): Graph;
  /** Post-condition: the violations found in `g` (empty when it holds). */
  check?(g: Graph, ctx: PassCtx): string[];
}
