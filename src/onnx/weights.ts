// Given weights for a model (`--weights FILE.safetensors` of compile, run and grad): tensors
// keyed by ONNX initializer name replace the model's own initial values before lowering, so
// that training, inference or gradients start from them (fine-tuning a trained model).
import { existsSync, readFileSync } from 'node:fs';
import { decodeTensors } from '../data/tensor-files.js';
import type { Graph } from '../ir/graph.js';
import { isFloat } from '../ir/dtypes.js';
import type { Tensor } from '../ir/tensor.js';
import { InputError } from './import.js';

export interface AppliedWeights {
  /** Initializers that took their value from the file. */
  applied: string[];
  /** Float initializers of the model that the file does not hold: they keep the model's values. */
  kept: string[];
}

/** The tensors of a weights file (safetensors, as `mpc train` writes them), or an InputError. */
export function readWeightsFile(path: string, option = '--weights'): Map<string, Tensor> {
  if (!existsSync(path)) throw new InputError(`${option} ${path}: no such file`);
  try {
    return decodeTensors(readFileSync(path), path).tensors;
  } catch (e) {
    throw new InputError(`${option} ${path}: ${(e as Error).message.split('\n')[0]}`);
  }
}

const sameShape = (a: readonly (number | string)[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * Replaces the initial contents of the imported graph's initializers by the file's tensors of
 * the same name. A name the model has no initializer for, or a shape that differs, is an
 * error (all of them in one message): such a file belongs to another model.
 */
export function applyWeights(g: Graph, weights: Map<string, Tensor>, label: string): AppliedWeights {
  const unknown: string[] = [];
  const mismatched: string[] = [];
  for (const [name, t] of weights) {
    const v = g.values.get(name);
    if (!v?.init) unknown.push(name);
    else if (!sameShape(v.shape, t.shape)) mismatched.push(`${name} [${t.shape}] where the model has [${v.shape}]`);
    else if (isFloat(v.dtype) !== isFloat(t.dtype)) mismatched.push(`${name} is ${t.dtype}, the model's is ${v.dtype}`);
  }
  const list = (xs: string[]) => `${xs.slice(0, 5).join(', ')}${xs.length > 5 ? `, +${xs.length - 5} more` : ''}`;
  if (unknown.length) throw new InputError(`${label}: ${unknown.length} tensor(s) name no initializer of the model: ${list(unknown)}`);
  if (mismatched.length) throw new InputError(`${label}: shapes differ from the model's: ${list(mismatched)}`);
  const applied: string[] = [];
  const kept: string[] = [];
  for (const v of g.values.values()) {
    if (!v.init) continue;
    const t = weights.get(v.name);
    if (t) {
      const data = isFloat(v.dtype) ? Float32Array.from(t.data) : Int32Array.from(t.data);
      v.init = { dtype: v.init.dtype, shape: [...v.init.shape], data };
      applied.push(v.name);
    } else if (v.role === 'param') kept.push(v.name);
  }
  return { applied, kept };
}
