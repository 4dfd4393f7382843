// fold-constants: the shape subgraphs of PyTorch's dynamic-batch exports become constants once
// --batch is known, and the models then compile through the whole training pipeline and match
// PyTorch. The models come from test/fixtures/fold/make_fold.py (torch 1.13, opset 13).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compileModel } from '../src/compile/compile.js';
import { passCtx } from '../src/compile/options.js';
import { runGraph } from '../src/interp/interpreter.js';
import { addConst, addNode } from '../src/ir/build.js';
import { emptyGraph, type Graph } from '../src/ir/graph.js';
import { fromArray, type Tensor } from '../src/ir/tensor.js';
import { importOnnx, importOnnxFile, InputError } from '../src/onnx/import.js';
import { bindDims } from '../src/passes/bind-dims.js';
import { FOLD_MAX_ELEMENTS, foldConstants, foldConstantsEval } from '../src/passes/fold-constants.js';
import { EVAL_PIPELINE, runPipeline, TRAIN_PIPELINE } from '../src/passes/pipeline.js';
import type { PassCtx } from '../src/passes/pass.js';
import { runOnGpu } from './helpers/gpu.js';
import { maxRelErr } from './helpers/fixtures.js';

const DIR = new URL('./fixtures/fold/', import.meta.url);
const path = (f: string) => new URL(f, DIR).pathname;
const REF = JSON.parse(readFileSync(path('reference.json'), 'utf8')) as Record<string, { x: { shape: number[]; data: number[] }; y: { shape: number[]; data: number[] } }>;

const ctx = (batch: number, policy = 'fp32'): PassCtx => passCtx({ policy, batch });

function afterFold(file: string, batch: number): Graph {
  return runPipeline(importOnnxFile(path(file)), ctx(batch), TRAIN_PIPELINE, { after: 'fold-constants' });
}

describe('PyTorch dynamic-batch shape subgraphs', () => {
  for (const batch of [2, 7])
    it(`view_flatten: x.view(x.size(0), -1) becomes a Reshape to the constant [${batch},-1] (--batch ${batch})`, () => {
      const g = afterFold('view_flatten.onnx', batch);
      expect(g.nodes.map((n) => n.op)).toEqual(['Reshape', 'Gemm']);
      const shape = g.values.get(g.nodes[0].inputs[1])!;
      expect(shape.role).toBe('const');
      expect(Array.from(shape.init!.data)).toEqual([batch, -1]);
      expect(g.values.get(g.nodes[0].outputs[0])!.shape).toEqual([batch, 12]);
      // The shape subgraph's own constants (Gather indices, Unsqueeze axes) are gone.
      expect([...g.values.values()].filter((v) => v.role === 'const').map((v) => v.name)).toEqual([g.nodes[0].inputs[1]]);
    });

  it('dyn_ops: Shape, Gather, Cast, Range, Unsqueeze, Concat, ConstantOfShape are all folded', () => {
    const g = afterFold('dyn_ops.onnx', 3);
    expect(g.nodes.map((n) => n.op)).toEqual(['Reshape', 'Add', 'Add', 'Reshape', 'Gemm']);
    const c = (k: number, i: number) => g.values.get(g.nodes[k].inputs[i])!;
    expect(Array.from(c(0, 1).init!.data)).toEqual([3, 3, 4]);
    // arange(3) as floats, unsqueezed to [3,1]; zeros(3,3,4); the final reshape to [3,12].
    expect(c(1, 1).init).toMatchObject({ dtype: 'f32', shape: [3, 1] });
    expect(Array.from(c(1, 1).init!.data)).toEqual([0, 1, 2]);
    expect(c(2, 1).init).toMatchObject({ dtype: 'f32', shape: [3, 3, 4] });
    expect(Array.from(c(3, 1).init!.data)).toEqual([3, -1]);
  });

  for (const file of ['view_flatten.onnx', 'dyn_ops.onnx'])
    for (const policy of ['fp32', 'fp16', 'bf16'])
      it(`${file} ${policy}: compiles through the training pipeline and codegen`, () => {
        const c = compileModel(path(file), { policy, batch: 4, loss: 'mse' });
        for (const g of [c.train, c.eval]) expect(g.nodes.filter((n) => ['Shape', 'Gather', 'Concat', 'Range', 'ConstantOfShape'].includes(n.op))).toEqual([]);
        expect(c.code.kernels.length).toBeGreaterThan(0);
        expect(Object.keys((c.train.meta.grads as { params: object }).params).sort()).toEqual(['fc.bias', 'fc.weight']);
      });

  for (const file of ['view_flatten.onnx', 'dyn_ops.onnx'])
    it(`${file}: forward matches PyTorch on the interpreter and WebGPU (fp32)`, async () => {
      const ref = REF[file];
      const g = runPipeline(importOnnxFile(path(file)), ctx(ref.x.shape[0]), EVAL_PIPELINE);
      const x: Tensor = fromArray('f32', ref.x.shape, ref.x.data);
      const cpu = runGraph(g, { x }).get('y')!;
      expect(cpu.shape).toEqual(ref.y.shape);
      expect(maxRelErr(cpu.data, ref.y.data, 1e-3)).toBeLessThan(1e-5);
      const gpu = (await runOnGpu(g, { x })).get('y')!;
      expect(maxRelErr(gpu.data, ref.y.data, 1e-3)).toBeLessThan(1e-5);
    });
});

// ---------------------------------------------------------------------------------------------
// What is and is not folded, on small hand-built graphs.

/** A graph with input x [2,3] f32 and a parameter p [3]; `build` adds nodes, their outputs become graph outputs. */
function graphWith(build: (g: Graph) => string[]): Graph {
  const g = emptyGraph('t');
  g.values.set('x', { name: 'x', dtype: 'f32', shape: ['N', 3], role: 'input' });
  g.inputs.push('x');
  g.values.set('p', { name: 'p', dtype: 'f32', shape: [3], role: 'param', init: fromArray('f32', [3], [1, 2, 3]) });
  // Before bind-dims x has a symbolic batch: nodes are added untyped, as the importer does.
  const outs = build(g);
  g.outputs.push(...outs);
  return g;
}

/** Adds a node without type inference (the importer's way); returns its output names. */
function raw(g: Graph, op: string, inputs: string[], outputs: string[], attrs = {}): string[] {
  for (const o of outputs) g.values.set(o, { name: o, dtype: 'f32', shape: [], role: 'activation' });
  g.nodes.push({ name: `${op}_${g.nodes.length}`, op, inputs, outputs, attrs });
  return outputs;
}

const fold = (g: Graph, batch = 2, eval_ = false) => runPipeline(g, ctx(batch), [bindDims, eval_ ? foldConstantsEval : foldConstants]);

describe('fold-constants', () => {
  it('folds a node whose inputs are all constants, and Shape of an activation', () => {
    const g = graphWith((g) => {
      const a = addConst(g, 'a', fromArray('i64', [2], [2, 3]));
      const b = addConst(g, 'b', fromArray('i64', [2], [10, 20]));
      return [...raw(g, 'Add', [a, b], ['sum']), ...raw(g, 'Relu', ['x'], ['r']), ...raw(g, 'Shape', ['r'], ['s'])];
    });
    const f = fold(g, 5);
    expect(f.nodes.map((n) => n.op)).toEqual(['Relu']);
    expect(Array.from(f.values.get('sum')!.init!.data)).toEqual([12, 23]);
    expect(Array.from(f.values.get('s')!.init!.data)).toEqual([5, 3]);
    expect(f.values.get('s')).toMatchObject({ role: 'const', dtype: 'i64', shape: [2] });
  });

  it('never folds a node that reads a parameter, but folds Shape of a parameter', () => {
    const g = graphWith((g) => {
      const c = addConst(g, 'c', fromArray('f32', [3], [1, 1, 1]));
      return [...raw(g, 'Add', ['p', c], ['pc']), ...raw(g, 'Shape', ['p'], ['ps'])];
    });
    const f = fold(g);
    expect(f.nodes.map((n) => n.op)).toEqual(['Add']);
    expect(Array.from(f.values.get('ps')!.init!.data)).toEqual([3]);
  });

  it(`keeps outputs larger than ${FOLD_MAX_ELEMENTS} elements (documented exception of the post-condition)`, () => {
    const g = graphWith((g) => {
      const big = addConst(g, 'big', fromArray('i64', [2], [1025, 1024]));
      const small = addConst(g, 'small', fromArray('i64', [2], [2, 3]));
      return [...raw(g, 'ConstantOfShape', [big], ['zeros']), ...raw(g, 'ConstantOfShape', [small], ['z'])];
    });
    const f = fold(g);
    expect(f.nodes.map((n) => n.op)).toEqual(['ConstantOfShape']);
    expect(f.values.get('zeros')).toMatchObject({ role: 'activation', shape: [1025, 1024] });
    expect(f.values.get('z')).toMatchObject({ role: 'const', shape: [2, 3] });
  });

  it('the post-condition reports a node left with only constant inputs', () => {
    const g = graphWith((g) => {
      const a = addConst(g, 'a', fromArray('f32', [2], [1, 2]));
      return [addNode(g, 'Neg', [a])[0]];
    });
    expect(foldConstants.check!(g, ctx(2))).toEqual([`Neg 'neg' has only constant inputs and was not folded`]);
    expect(foldConstants.check!(fold(g), ctx(2))).toEqual([]);
  });

  it('Dropout: kept in training mode; Identity (a view) in inference, its mask a constant of ones', () => {
    const make = (training: number | undefined) =>
      graphWith((g) => {
        const ratio = addConst(g, 'ratio', fromArray('f32', [], [0.5]));
        const ins = ['x', ratio, ...(training === undefined ? [] : [addConst(g, 'train', fromArray('bool', [], [training]))])];
        return raw(g, 'Dropout', ins, ['y', 'mask']);
      });
    expect(fold(make(1)).nodes.map((n) => n.op)).toEqual(['Dropout']);
    for (const [what, f] of [
      ['training_mode false', fold(make(0))],
      ['no training_mode', fold(make(undefined))],
      ['evaluation pipeline', fold(make(1), 2, true)],
    ] as const) {
      expect(f.nodes.map((n) => `${n.op}(${n.inputs.join(',')})`), what).toEqual(['Identity(x)']);
      expect(f.values.get('mask'), what).toMatchObject({ role: 'const', dtype: 'bool', shape: [2, 3] });
      expect(Array.from(f.values.get('mask')!.init!.data), what).toEqual([1, 1, 1, 1, 1, 1]);
    }
  });

  it('a shape that depends on data, not on dimensions, is an input error that names --batch/--dim', () => {
    const g = graphWith((g) => {
      g.values.set('n', { name: 'n', dtype: 'i64', shape: [2], role: 'input' });
      g.inputs.push('n');
      return raw(g, 'Reshape', ['x', 'n'], ['y']);
    });
    expect(() => fold(g)).toThrow(InputError);
    expect(() => fold(g)).toThrow(/Reshape 'Reshape_0': the shape input must be a constant.*--batch/);
  });

  it('an unresolvable dimension names the input and the option (bind-dims, before folding)', () => {
    const bad = new URL('./fixtures/bad/dynamic_dim.onnx', import.meta.url).pathname;
    expect(() => runPipeline(importOnnxFile(bad), ctx(2), TRAIN_PIPELINE)).toThrow(/input 'x' has dynamic dimension 'F' \(axis 1\): pass --dim F=N/);
    expect(() => runPipeline(importOnnx(readFileSync(bad)), passCtx({ policy: 'fp32', batch: 2, dims: { F: 4 } }), TRAIN_PIPELINE)).not.toThrow();
  });
});
