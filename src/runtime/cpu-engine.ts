// The Engine interface over the CPU reference interpreter (the lowered IR of the folder).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Tensor } from '../ir/tensor.js';
import { isFloat } from '../ir/dtypes.js';
import type { Graph } from '../ir/graph.js';
import { graphFromJson } from '../ir/serialize.js';
import { InterpSession, runGraph } from '../interp/interpreter.js';
import type { Engine, LoadedProgram } from './core.js';

export function cpuEngine(p: LoadedProgram): Engine {
  const load = (file: string): Graph => graphFromJson(JSON.parse(readFileSync(join(p.dir, file), 'utf8')), p.init);
  const train = load(p.program.files.trainGraph);
  const evalG = load(p.program.files.evalGraph);
  const session = new InterpSession(train);
  const { input, labels, prediction } = p.program.io;
  const inType = train.values.get(input)!;
  const lossName = (train.meta.loss as { value: string }).value;
  const labelsType = train.values.get(labels)!;
  // The interpreter holds integers in Int32Array and floats in Float32Array.
  const feed = (x: Float32Array | Int32Array) => ({
    dtype: inType.dtype,
    shape: inType.shape as number[],
    data: isFloat(inType.dtype) ? (x instanceof Float32Array ? x : Float32Array.from(x)) : x instanceof Int32Array ? x : Int32Array.from(x),
  });
  let last: Map<string, Tensor> | undefined;
  const hp = 'optim.hparams';
  return {
    backend: 'cpu',
    adapter: 'reference interpreter',
    setHparams: (v) => session.state.has(hp) && session.state.set(hp, { dtype: 'f32', shape: [v.length], data: Float32Array.from(v) }),
    trainStep(x, y) {
      last = session.step({ [input]: feed(x), [labels]: { dtype: labelsType.dtype, shape: labelsType.shape as number[], data: y } });
    },
    loss: async () => last?.get(lossName)?.data[0] ?? NaN,
    async predict(x) {
      const env = runGraph(evalG, { [input]: feed(x) }, session.state);
      return env.get(prediction)!.data as Float32Array;
    },
    async read(names) {
      return new Map(names.map((n) => [n, session.state.get(n) ?? last?.get(n) ?? p.init.get(n)!]));
    },
    write(values) {
      for (const [n, t] of values) session.state.set(n, t);
    },
  };
}
