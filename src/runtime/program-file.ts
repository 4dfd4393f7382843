// The format of program.json, the compiled program that the runtime loads. Types only, plus
// two constants: no dependencies at run time.
import type { ProgramBuffer, ProgramKernel, Schedule } from '../codegen/program.js';
import type { Fp8Tensor } from '../passes/quantize-fp8.js';
import type { LossKind, LossScaleConfig, OptimizerConfig } from '../passes/pass.js';
import type { Target } from '../codegen/kernel.js';

export const PROGRAM_FORMAT = 'mpc-program';
export const PROGRAM_VERSION = 3;

/** program.json */
export interface ProgramFile {
  format: typeof PROGRAM_FORMAT;
  version: number;
  model: string;
  policy: string;
  target: Target;
  batch: number;
  loss: LossKind;
  optimizer: OptimizerConfig;
  lossScale: LossScaleConfig;
  buffers: ProgramBuffer[];
  /** Bytes of each device allocation (the memory plan; ProgramBuffer.alloc points into it). */
  allocations: number[];
  kernels: ProgramKernel[];
  schedules: Record<'train' | 'eval', Schedule>;
  /** The model's data input, the labels input and the prediction output (eval schedule). */
  io: {
    input: string;
    labels: string;
    prediction: string;
    /** When the input holds indices (token ids): the size of the smallest table they index. */
    indexRange?: number;
  };
  /** ONNX initializer name → buffer index of its fp32 master weight. */
  params: Record<string, number>;
  /** Buffer indices of training state the host reads or writes. */
  state: { hparams?: number; step?: number; lossScale?: number; skipped?: number; loss: number };
  /** `model`: a copy of the ONNX model compiled (what `mpc export` rewrites). */
  files: { init: string; trainGraph: string; evalGraph: string; model?: string };
  /** Initial tensors that are all zeros (optimizer moments, zero biases): not stored in the init file. */
  zeros?: string[];
  /** fp8 tensors of the training step and their scaling state (fp8 policy). */
  fp8?: Fp8Tensor[];
}

