// GPU test helpers: run a compiled graph's schedule on WebGPU and compare with the interpreter.
import { getGpu, type Gpu } from '../../src/runtime/device.js';
import { GpuProgram } from '../../src/runtime/gpu-program.js';
import { generate } from '../../src/codegen/program.js';
import type { Graph } from '../../src/ir/graph.js';
import type { Tensor } from '../../src/ir/tensor.js';
import type { Target } from '../../src/codegen/kernel.js';

/** The GPU, or a failed test: CI installs lavapipe, so a missing adapter is an error, not a skip. */
export async function gpu(): Promise<Gpu> {
  return getGpu();
}

/**
 * Runs one graph on the GPU with the given feeds (and state/param contents from the graph's
 * init) and returns every value's contents, read back from its buffer.
 */
export async function runOnGpu(g: Graph, feeds: Record<string, Tensor>, target: Target = { f16: true }): Promise<Map<string, Tensor>> {
  const dev = await gpu();
  const code = generate({ main: g }, target);
  const prog = await GpuProgram.create(dev, { buffers: code.buffers, kernels: code.kernels, schedules: code.schedules, files: code.files });
  try {
    for (const v of g.values.values()) if (v.init) prog.write(code.bufferOf.main[v.name], v.init.data);
    for (const [k, t] of Object.entries(feeds)) prog.write(code.bufferOf.main[k], t.data);
    prog.run('main');
    const names = [...g.values.keys()];
    const ts = await prog.read(names.map((n) => code.bufferOf.main[n]));
    // Views share a buffer with another shape: give each value its own logical shape.
    return new Map(names.map((n, i) => [n, { ...ts[i], dtype: g.values.get(n)!.dtype, shape: g.values.get(n)!.shape as number[] }]));
  } finally {
    prog.destroy();
  }
}

/**
 * Runs a single node of `g` on the GPU with the given input contents (e.g. the interpreter's
 * values), so each kernel is checked on exactly the inputs the oracle saw.
 */
export async function runNodeOnGpu(g: Graph, nodeIndex: number, env: Map<string, Tensor>, target: Target = { f16: true }): Promise<Tensor[]> {
  const n = g.nodes[nodeIndex];
  const one: Graph = { name: n.name, values: new Map(), nodes: [{ ...n }], inputs: [], outputs: [...n.outputs.filter(Boolean)], updates: [], meta: {} };
  for (const i of n.inputs) if (i) one.values.set(i, { ...g.values.get(i)!, role: 'const', init: env.get(i)! });
  for (const o of n.outputs) if (o) one.values.set(o, { ...g.values.get(o)!, role: 'activation', init: undefined });
  const got = await runOnGpu(one, {}, target);
  // An in-place output lives in its input's buffer.
  return n.outputs.map((o) => got.get(o)!);
}
