// GPU test helpers: run a compiled graph's schedule on WebGPU and compare with the interpreter.
import { runOnce } from '../../src/runtime/run-once.js';
import type { Graph } from '../../src/ir/graph.js';
import type { Tensor } from '../../src/ir/tensor.js';
import type { Target } from '../../src/codegen/kernel.js';

/**
 * Runs one graph on the GPU with the given feeds (and state/param contents from the graph's
 * init) and returns every value's contents, read back from its buffer. No adapter is an
 * error, not a skip: CI installs lavapipe.
 */
export async function runOnGpu(g: Graph, feeds: Record<string, Tensor>, target: Target = { f16: true }): Promise<Map<string, Tensor>> {
  return runOnce(g, feeds, [...g.values.keys()], 'webgpu', target);
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
