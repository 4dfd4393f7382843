// One run of a lowered graph on a backend, returning the values asked for: what `mpc run`
// (inference) and `mpc grad` (loss and gradients of one batch) are built on.
import { generate } from '../codegen/program.js';
import type { Target } from '../codegen/kernel.js';
import type { Graph } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { runGraph } from '../interp/interpreter.js';
import { getGpu } from './device.js';
import { GpuProgram } from './gpu-program.js';

/** `fuse: false`: one kernel per node (comparisons with the fused program). */
export async function runOnce(g: Graph, feeds: Record<string, Tensor>, want: string[], backend: 'webgpu' | 'cpu', target: Target, opts: { fuse?: boolean } = {}): Promise<Map<string, Tensor>> {
  if (backend === 'cpu') {
    const env = runGraph(g, feeds);
    return new Map(want.map((n) => [n, env.get(n)!]));
  }
  const gpu = await getGpu({ f16: target.f16 });
  const code = generate({ main: g }, { ...target, subgroupSize: target.subgroupSize === gpu.subgroupSize ? target.subgroupSize : undefined }, { keep: { main: want }, fuse: opts.fuse });
  const prog = await GpuProgram.create(gpu, code);
  try {
    const buf = code.bufferOf.main;
    for (const v of g.values.values()) if (v.init) prog.write(buf[v.name], v.init.data);
    for (const [k, t] of Object.entries(feeds)) prog.write(buf[k], t.data);
    prog.run('main');
    const got = await prog.read(want.map((n) => buf[n]));
    // A view shares its root's buffer: give each value its own shape and dtype.
    return new Map(want.map((n, i) => [n, { ...got[i], dtype: g.values.get(n)!.dtype, shape: g.values.get(n)!.shape as number[] }]));
  } finally {
    prog.destroy();
  }
}
