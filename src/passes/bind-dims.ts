// Gives every symbolic dimension of the model inputs a number (--batch, --dim), so that all
// later shapes are static and kernels see constants.
import { InputError } from '../onnx/import.js';
import type { Graph } from '../ir/graph.js';
import type { Pass } from './pass.js';

export const bindDims: Pass = {
  name: 'bind-dims',
  doc: 'bind symbolic dimensions (dynamic batch) to numbers from --batch / --dim',
  run(g, ctx) {
    const bound = new Map<string, number>(Object.entries(ctx.dims));
    const declared = new Map(g.inputs.map((name) => [name, [...g.values.get(name)!.shape]] as const));
    for (const name of g.inputs) {
      const v = g.values.get(name)!;
      v.shape = v.shape.map((d, k) => {
        if (typeof d === 'number') return d;
        const n = bound.get(d) ?? (k === 0 ? ctx.batch : undefined);
        if (n === undefined)
          throw new InputError(`input '${name}' has dynamic dimension '${d}' (axis ${k}): pass ${k === 0 ? '--batch N' : `--dim ${d}=N`}`);
        bound.set(d, n);
        return n;
      });
    }
    const symbols = new Set([...declared.values()].flatMap((shape) => shape.filter((d) => typeof d === 'string')));
    const unknown = Object.keys(ctx.dims).filter((k) => !symbols.has(k));
    if (unknown.length)
      throw new InputError(
        `--dim ${unknown.join(', ')}: the model has no such dimension (its symbolic dimensions: ${[...symbols].join(', ') || 'none'})`,
      );
    g.meta.dims = Object.fromEntries(bound);
    return g;
  },
  check: (g: Graph) =>
    g.inputs.filter((i) => g.values.get(i)!.shape.some((d) => typeof d !== 'number')).map((i) => `input '${i}' still has a symbolic dimension`),
};
