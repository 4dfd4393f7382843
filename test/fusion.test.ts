// Elementwise fusion: fused programs train bit-identically to unfused ones on the bundled
// models under every policy (the same rounding points), with fewer dispatches; a value the
// host reads is never fused away.
import { describe, expect, it } from 'vitest';
import { compileModel } from '../src/compile/compile.js';
import { planFusion } from '../src/codegen/fuse.js';
import { operandReloads } from '../src/codegen/kernels/gemm.js';
import type { Target } from '../src/codegen/kernel.js';
import { opRow } from '../src/ops/table.js';
import type { Graph, Node } from '../src/ir/graph.js';
import { trainProgram } from './helpers/train-program.js';
import { getGpu } from '../src/runtime/device.js';

/** The nodes that read a value, seen through views. */
function readersOf(g: Graph, v: string): Node[] {
  return g.nodes.filter((n) => n.inputs.includes(v)).flatMap((n) => (opRow(n.op).alias?.view ? readersOf(g, n.outputs[0]) : [n]));
}

// Every bundled model: the GPT blocks have elementwise chains and GEMM epilogues (residual
// adds, casts); the MLP's and CNN's inference programs fuse Relu into the GEMM before it.
const CASES = [
  ...['fp32', 'fp16', 'fp8'].map((policy) => ({ model: 'mlp', policy })),
  // The CNN's fp32 programs have nothing to fuse (Relu follows a convolution, and the GEMM's
  // result is the model's output); its bf16 ones fuse casts.
  { model: 'cnn', policy: 'bf16' },
  ...['fp32', 'fp16', 'bf16', 'fp8'].map((policy) => ({ model: 'gpt-block', policy })),
  // LayerNorm decomposed into ReduceMean/Sub/Pow/Add/Sqrt/Div/Mul/Add: long chains.
  ...['fp32', 'fp16'].map((policy) => ({ model: 'gpt-block-op13', policy })),
];

describe('fusion', () => {
  for (const { model, policy } of CASES)
      it(`${model} ${policy}: fused and unfused programs train bit-identically`, async () => {
        const fused = await trainProgram(model, { policy, fuse: true }, 2, 4);
        const plain = await trainProgram(model, { policy, fuse: false }, 2, 4);
        expect(fused.dispatches).toBeLessThan(plain.dispatches);
        expect(fused.losses).toEqual(plain.losses);
        expect(fused.losses.every(Number.isFinite)).toBe(true);
        expect(fused.params).toEqual(plain.params);
        expect(fused.fp8).toEqual(plain.fp8);
        expect(Object.keys(fused.fp8).length > 0).toBe(policy === 'fp8');
        expect(fused.logits).toEqual(plain.logits);
      });

  // The same on the adapter's subgroup GEMM (what `mpc compile` picks on lavapipe): its
  // operands read in runs through their prologues (casts of weights, fp8 quantizers).
  for (const { model, policy } of [
    { model: 'mlp', policy: 'fp16' },
    { model: 'mlp', policy: 'fp8' },
    { model: 'gpt-block', policy: 'bf16' },
    { model: 'gpt-block', policy: 'fp8' },
  ])
    it(`${model} ${policy}, subgroup GEMMs: fused and unfused programs train bit-identically`, async () => {
      const subgroupSize = (await getGpu({ f16: true })).subgroupSize;
      expect(subgroupSize, 'lavapipe has a fixed subgroup size').toBeDefined();
      const target = { f16: true, subgroupSize };
      const fused = await trainProgram(model, { policy, fuse: true, target }, 2, 4);
      const plain = await trainProgram(model, { policy, fuse: false, target }, 2, 4);
      expect(fused.dispatches).toBeLessThan(plain.dispatches);
      expect(fused.losses).toEqual(plain.losses);
      expect(fused.losses.every(Number.isFinite)).toBe(true);
      expect(fused.params).toEqual(plain.params);
      expect(fused.fp8).toEqual(plain.fp8);
      expect(fused.logits).toEqual(plain.logits);
    });

  it('GEMM epilogues: the GPT block stores each projection once — fp32 with the residual add applied; fp16 in f16, saved for the backward pass, which recomputes the f32 sum', () => {
    const headedOps = (policy: string) => {
      const c = compileModel('models/gpt-block.onnx', { policy, batch: 2 });
      const g = c.train;
      const plan = planFusion(g, new Set([...g.outputs, (g.meta.loss as { value: string }).value]));
      const headed = [...plan.groups.values()].filter((chain) => chain.some((n) => opRow(n.op).epilogue));
      expect(headed.length).toBeGreaterThan(0);
      return { g, plan, ops: headed.map((chain) => chain.map((n) => n.op).join(' ')) };
    };
    expect(headedOps('fp32').ops).toContain('Gemm Add');
    const { g, plan } = headedOps('fp16');
    // The projections' f16 results are read twice (the forward sum, the backward pass's
    // recomputation of it): stored by the GEMM itself, f16, no epilogue.
    for (const name of ['/attn/proj/MatMul.gemm', '/mlp/proj/MatMul.gemm']) {
      const gemm = g.nodes.find((n) => n.outputs[0] === name)!;
      expect(g.values.get(name)!.dtype).toBe('f16');
      expect([...plan.groups.values()].some((chain) => chain.includes(gemm)), name).toBe(false);
    }
  });

  it("GELU's backward pass is the epilogue of the GEMM that computes its output's gradient: that gradient never reaches memory", () => {
    for (const policy of ['fp32', 'fp16', 'bf16', 'fp8']) {
      const c = compileModel('models/gpt-block.onnx', { policy, batch: 2 });
      const g = c.train;
      const plan = planFusion(g, new Set([...g.outputs, (g.meta.loss as { value: string }).value]));
      const dgrad = g.nodes.find((n) => n.outputs[0] === '/mlp/proj/MatMul.gemm.grad_2')!;
      const chain = [...plan.groups.values()].find((ch) => ch.includes(dgrad));
      expect(chain?.[0], policy).toBe(dgrad);
      expect(chain!.map((n) => n.op), policy).toContain('mpc.ErfGrad');
      // Values read twice inside it (the scaled gradient of GELU's output) are computed once.
      expect(chain!.some((n) => readersOf(g, n.outputs[0]).filter((r) => chain!.includes(r)).length > 1), policy).toBe(true);
      for (const n of chain!.slice(0, -1)) expect(c.program.buffers[c.code.bufferOf.train[n.outputs[0]]].alloc, `${policy} ${n.outputs[0]}`).toBe(-1);
    }
  });

  it('an f32 reader of a GEMM\'s f16 result widens it on load: the GEMM stores f16 (attention probabilities\' and LayerNorm outputs\' gradients, the logits for the loss gradient)', () => {
    for (const policy of ['fp16', 'bf16']) {
      const c = compileModel('models/gpt-block.onnx', { policy, batch: 2 });
      const g = c.train;
      const plan = planFusion(g, new Set([...g.outputs, (g.meta.loss as { value: string }).value]));
      // The operand read through a widening cast: dY, or the loss gradient's logits.
      const operand: Record<string, number> = { 'mpc.SoftmaxGrad': 0, 'mpc.LayerNormGrad': 0, 'mpc.LayerNormParamGrad': 0, 'mpc.SoftmaxCrossEntropyGrad': 1 };
      const readers = g.nodes.filter((n) => n.op in operand);
      expect(readers.length, policy).toBe(11); // SoftmaxGrad; dX, dScale, dBias of ln1, ln2, ln_f; the loss's
      for (const n of readers) {
        const p = plan.prologues.get(n)?.get(operand[n.op]);
        expect(p, `${policy} ${n.name}`).toBeDefined();
        expect([g.values.get(p!.inputs[0])!.dtype, g.values.get(p!.outputs[0])!.dtype], n.name).toEqual([policy === 'fp16' ? 'f16' : 'bf16', 'f32']);
        // The widened value is never stored; the narrow one the GEMM wrote is read instead.
        expect(c.program.buffers[c.code.bufferOf.train[p!.outputs[0]]].alloc, p!.outputs[0]).toBe(-1);
        const kernel = c.program.kernels.find((k) => k.node === n.name || k.fused?.includes(n.name))!;
        expect(kernel.bindings.map((b) => b.buffer), n.name).toContain(c.code.bufferOf.train[p!.inputs[0]]);
      }
    }
  });

  it('fused kernels read scalar constants as literals, not through bindings', () => {
    const c = compileModel('models/gpt-block.onnx', { policy: 'fp16', batch: 2 });
    const fused = c.program.kernels.filter((k) => k.fused);
    expect(fused.length).toBeGreaterThan(0);
    const scalarConst = (b: number) => {
      const v = c.train.values.get(c.program.buffers[b].name) ?? c.eval.values.get(c.program.buffers[b].name);
      return v?.role === 'const' && c.program.buffers[b].shape.reduce((a, d) => a * d, 1) === 1;
    };
    // GELU's constants (1/sqrt(2), 1, 0.5) are read by its fused kernels, in neither binding.
    const gelu = fused.filter((k) => k.fused!.some((n) => n.includes('/act/Erf')));
    expect(gelu.length).toBeGreaterThan(0);
    for (const k of fused) expect(k.bindings.filter((b) => scalarConst(b.buffer)).map((b) => c.program.buffers[b.buffer].name), k.name).toEqual([]);
  });

  it('GELU, which reads its input twice, is the epilogue of the GEMM before it where nothing else reads that GEMM (inference)', () => {
    const c = compileModel('models/gpt-block.onnx', { policy: 'fp32', batch: 2 });
    const g = c.eval;
    const plan = planFusion(g, new Set(g.outputs));
    const fc = g.nodes.find((n) => n.outputs[0] === '/mlp/fc/MatMul.gemm')!;
    const chain = [...plan.groups.values()].find((ch) => ch[0] === fc);
    expect(chain?.map((n) => n.op)).toEqual(['Gemm', 'Div', 'Erf', 'Add', 'Mul', 'Mul']);
    // GELU's input (the GEMM's result, seen through a view) has two readers, both in the chain.
    const x = '/mlp/fc/Add_output_0';
    expect(readersOf(g, x).length).toBe(2);
    for (const r of readersOf(g, x)) expect(chain).toContain(r);
    // The training step saves that result for the backward pass: no epilogue there.
    const t = c.train;
    const tplan = planFusion(t, new Set([...t.outputs, (t.meta.loss as { value: string }).value]));
    const tfc = t.nodes.find((n) => n.outputs[0] === '/mlp/fc/MatMul.gemm')!;
    expect([...tplan.groups.values()].some((ch) => ch[0] === tfc)).toBe(false);
  });

  it('row kernels take epilogues: Softmax rounds attention probabilities to f16 in the attention kernel, the gradients of Softmax and LayerNorm store their casts and sums', () => {
    const c = compileModel('models/gpt-block.onnx', { policy: 'fp16', batch: 2 });
    const g = c.train;
    const plan = planFusion(g, new Set([...g.outputs, (g.meta.loss as { value: string }).value]));
    const heads = [...plan.groups.values()].map((chain) => chain[0]).filter((n) => opRow(n.op).epilogue);
    const ops = new Set(heads.map((n) => n.op));
    for (const op of ['mpc.SoftmaxGrad', 'mpc.LayerNormGrad']) expect(ops, op).toContain(op);
    // Forward: Softmax is the row op of the attention kernel, and its epilogue rounds the
    // probabilities the P·V product reads to f16, where the unfused program stored them.
    const [att] = [...plan.attention.values()];
    expect(att.row.map((n) => n.op)).toEqual(['Softmax', 'Cast']);
    expect(g.values.get(att.row[1].outputs[0])!.dtype).toBe('f16');
  });

  it('chains hold only elementwise rows, never a value the host reads, and every reader of an inner value is in its chain', () => {
    const c = compileModel('models/gpt-block.onnx', { policy: 'bf16', batch: 2 });
    const g = c.train;
    const pinned = new Set([...g.outputs, (g.meta.loss as { value: string }).value]);
    const plan = planFusion(g, pinned);
    expect(plan.groups.size).toBeGreaterThan(0);
    for (const chain of plan.groups.values()) {
      const inner = chain.slice(0, -1).flatMap((n) => n.outputs);
      for (const n of chain) expect(opRow(n.op).expr ?? opRow(n.op).epilogue, n.op).toBeDefined();
      for (const v of inner) {
        expect(pinned.has(v)).toBe(false);
        const r = readersOf(g, v);
        expect(r.length).toBeGreaterThan(0);
        for (const n of r) expect(chain, `${v} read by ${n.name}`).toContain(n);
      }
    }
    // GELU's backward pass reads the gradient of its output twice: one kernel, which computes it.
    const shared = [...plan.groups.values()].filter((ch) => ch.some((n) => readersOf(g, n.outputs[0]).filter((r) => ch.includes(r)).length > 1));
    expect(shared.length).toBeGreaterThan(0);
  });

  it('GEMM prologues: in the GPT block fp16 every cast of a weight and of attention probabilities is computed in the loads of the GEMM that reads it', () => {
    const c = compileModel('models/gpt-block.onnx', { policy: 'fp16', batch: 2 });
    const g = c.train;
    const plan = planFusion(g, new Set([...g.outputs, (g.meta.loss as { value: string }).value]));
    const folded = [...plan.prologues.values()].flatMap((m) => [...m.values()]);
    expect(folded.length).toBeGreaterThan(0);
    for (const [reader, m] of plan.prologues) {
      for (const [k, p] of m) {
        expect(opRow(reader.op).prologue, reader.op).toContain(k);
        // The producer is a unary elementwise node every reader of which (through views)
        // loads through it.
        expect(opRow(p.op).expr, p.op).toBeDefined();
        expect(readersOf(g, p.outputs[0])).toContain(reader);
        for (const r of readersOf(g, p.outputs[0])) expect([...(plan.prologues.get(r)?.values() ?? [])], `${p.name} read by ${r.name}`).toContain(p);
        expect(plan.absorbed.has(p)).toBe(true);
      }
    }
    // Every f16 copy of a weight feeds its GEMM through the loads: no cast kernel of its own.
    const weightCasts = g.nodes.filter((n) => n.op === 'Cast' && g.values.get(n.inputs[0])?.role === 'param' && g.nodes.some((r) => (opRow(r.op).prologue ?? []).some((k) => r.inputs[k] === n.outputs[0])));
    expect(weightCasts.length).toBeGreaterThan(0);
    for (const n of weightCasts) expect(folded, n.name).toContain(n);
    // Among them the biases, cast for Gemm's addend C.
    expect(weightCasts.some((n) => g.nodes.some((r) => r.op === 'Gemm' && r.inputs[2] === n.outputs[0]))).toBe(true);
    // Constants are converted at compile time: no Cast of a constant is left to run or recompute.
    expect(g.nodes.filter((n) => n.op === 'Cast' && g.values.get(n.inputs[0])?.role === 'const').map((n) => n.name)).toEqual([]);
    expect([...g.values.values()].some((v) => v.role === 'const' && v.dtype === 'f16')).toBe(true);
    // In the program, those GEMM kernels list the cast first among the nodes they compute.
    const kernels = c.program.kernels.filter((k) => k.fused && weightCasts.some((n) => n.name === k.fused![0]));
    expect(kernels.length).toBeGreaterThan(0);
  });

  it('a cast goes into the GEMM loads only where the GEMM loads each element at most 32 times (else its own kernel rounds it once)', () => {
    const big = compileModel('models/gpt-block.onnx', { policy: 'fp16', batch: 64 });
    const g = big.train;
    const plan = planFusion(g, new Set(g.outputs));
    const folded = new Set([...plan.prologues.values()].flatMap((m) => [...m.values()]));
    const target = g.meta.target as Target;
    let kept = 0;
    for (const n of g.nodes.filter((m) => m.op === 'Gemm' && opRow(m.op).prologue)) {
      const [M, N] = g.values.get(n.outputs[0])!.shape as number[];
      const r = operandReloads({ M, N, target }, 1);
      for (const [k, reloads] of [[0, r.a], [1, r.b]] as const) {
        const cast = g.nodes.find((m) => m.op === 'Cast' && m.outputs[0] === n.inputs[k]);
        if (!cast || g.nodes.filter((m) => m.inputs.includes(cast.outputs[0])).length !== 1) continue;
        // (A cast at the end of an elementwise chain is computed by the chain's kernel: no
        // kernel of its own either way, and the chain stores the narrow value.)
        const inChain = [...plan.groups.values()].some((ch) => ch.includes(cast));
        if (reloads > 32) expect(folded.has(cast), `${n.name} operand ${k}: ${reloads} loads per element`).toBe(false);
        else expect(folded.has(cast) || inChain, `${n.name} operand ${k}: ${reloads} loads per element`).toBe(true);
        if (reloads > 32) kept++;
      }
      // The bias is read once per output element: its cast is always in the epilogue's load.
      const bias = g.nodes.find((m) => m.op === 'Cast' && n.inputs[2] && m.outputs[0] === n.inputs[2]);
      if (bias) expect(folded.has(bias), `${n.name} bias`).toBe(true);
    }
    expect(kept).toBeGreaterThan(0);
  });

  it('fp8 with delayed scaling: each quantizer measures its tensor in the pass that quantizes it (no statistics kernel of its own); current scaling keeps the statistics first', () => {
    for (const [scaling, fused] of [['delayed', true], ['current', false]] as const) {
      const c = compileModel('models/mlp.onnx', { policy: 'fp8', batch: 128, fp8: { scaling } });
      const g = c.train;
      const plan = planFusion(g, new Set(g.outputs));
      const stats = g.nodes.filter((n) => n.op === 'mpc.Fp8Stats');
      expect(stats.length).toBeGreaterThan(2);
      for (const s of stats) expect(plan.absorbed.has(s), `${scaling}: ${s.name}`).toBe(fused);
      const trainKernels = c.program.schedules.train.kernels.map((i) => c.program.kernels[i]);
      const own = trainKernels.filter((k) => stats.some((s) => s.name === k.node));
      expect(own.length, `${scaling}: kernels of Fp8Stats nodes`).toBe(fused ? 0 : stats.length);
      if (fused) {
        // Small tensors: one dispatch for both nodes; large ones (the first layer's input and
        // weight at batch 128): quantize in many workgroups, finish — their statistics' words
        // cleared by the runtime when the step starts, not by a dispatch.
        const byNode = new Map<string, number>();
        for (const k of trainKernels)
          if (k.fused?.some((f) => stats.some((s) => s.name === f))) byNode.set(k.node, (byNode.get(k.node) ?? 0) + 1);
        expect([...byNode.values()].sort()).toContain(1);
        expect([...byNode.values()].sort()).toContain(2);
        const cleared = (c.program.schedules.train.clear ?? []).map((b) => c.program.buffers[b].name);
        const large = stats.filter((s) => byNode.get(trainKernels.find((k) => k.fused?.includes(s.name))!.node) === 2).map((s) => s.outputs[0]);
        expect(large.length).toBeGreaterThan(0);
        expect(cleared.sort()).toEqual(large.sort());
      }
    }
  });
});
