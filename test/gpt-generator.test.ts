// The GPT generator (src/models/gpt.ts) against PyTorch's own export of the same module
// (test/fixtures/gpt-deep-torch.json, written by models/export_gpt_deep.py), and the
// generated model through the compiler against onnxruntime.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import type { onnx as O } from 'onnx-proto';
import { compileModel } from '../src/compile/compile.js';
import { runGraph } from '../src/interp/interpreter.js';
import { checkGptConfig, GPT12, gptOnnx, gptParameters, type GptConfig } from '../src/models/gpt.js';
import { loadFixture, maxRelErr } from './helpers/fixtures.js';

const onnx = onnxProto.onnx;
const fixture = loadFixture('gpt-deep-torch.json');
const CONFIG: GptConfig = fixture.config; // 2 blocks, width 48, 4 heads, context 8, vocabulary 64

type Long = { toNumber(): number } | number;
const num = (v: Long | null | undefined): number => (v == null ? 0 : typeof v === 'number' ? v : v.toNumber());

function tensorValues(t: O.ITensorProto): number[] {
  const raw = t.rawData!;
  const buf = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
  if (t.dataType === onnx.TensorProto.DataType.FLOAT) return Array.from(new Float32Array(buf));
  if (t.dataType === onnx.TensorProto.DataType.INT64) return Array.from(new BigInt64Array(buf), Number);
  throw new Error(`unexpected constant dtype ${t.dataType}`);
}

function attrValue(a: O.IAttributeProto): unknown {
  const T = onnx.AttributeProto.AttributeType;
  switch (a.type) {
    case T.INT: return num(a.i);
    case T.FLOAT: return a.f;
    case T.INTS: return (a.ints ?? []).map(num);
    case T.TENSOR: return { dims: (a.t!.dims ?? []).map(num), dtype: onnx.TensorProto.DataType[a.t!.dataType!], values: tensorValues(a.t!) };
    default: throw new Error(`unexpected attribute type ${a.type}`);
  }
}

/** The generated model in the fixture's form (see models/export_gpt_deep.py, describe_graph). */
function describeModel(bytes: Uint8Array) {
  const m = onnx.ModelProto.decode(bytes);
  const g = m.graph!;
  const inits = new Set(g.initializer!.map((t) => t.name!));
  const inputs = new Set(g.input!.map((v) => v.name!));
  const produced = new Map<string, string>();
  const nodes = g.node!.map((n, i) => {
    const refs = n.input!.map((x) => (inits.has(x) ? `init:${x}` : inputs.has(x) ? `input:${x}` : produced.get(x)!));
    n.output!.forEach((o, j) => produced.set(o, `node:${i}:${j}`));
    return { op: n.opType!, inputs: refs, attrs: Object.fromEntries(n.attribute!.map((a) => [a.name!, attrValue(a)])) };
  });
  const io = (v: O.IValueInfoProto) => ({
    name: v.name!,
    elemType: onnx.TensorProto.DataType[v.type!.tensorType!.elemType!],
    dims: v.type!.tensorType!.shape!.dim!.map((d) => (d.dimParam ? d.dimParam : num(d.dimValue))),
  });
  return {
    irVersion: num(m.irVersion),
    opset: num(m.opsetImport![0].version),
    nodes,
    initializers: g.initializer!.map((t) => ({ name: t.name!, dims: t.dims!.map(num), dtype: onnx.TensorProto.DataType[t.dataType!] })),
    inputs: g.input!.filter((v) => !inits.has(v.name!)).map(io),
    outputs: g.output!.map(io),
  };
}

const VARIANTS = [
  { opset: '17', layerNorm: 'op17' as const },
  { opset: '13', layerNorm: 'op13' as const },
];

const dir = mkdtempSync(join(tmpdir(), 'mpc-gpt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

for (const v of VARIANTS) {
  describe(`generated GPT, opset ${v.opset}`, () => {
    const bytes = gptOnnx({ ...CONFIG, layerNorm: v.layerNorm });
    const torch = fixture.exports[v.opset];

    it("has PyTorch's graph: op sequence, wiring, attributes, constants, initializers, io", () => {
      const ours = describeModel(bytes);
      expect(ours.nodes.map((n) => n.op)).toEqual(torch.nodes.map((n: { op: string }) => n.op));
      expect(ours.nodes).toEqual(torch.nodes); // inputs as init:/input:/node:I:J, attribute values
      expect(ours.initializers).toEqual(torch.initializers);
      expect(ours.inputs).toEqual(torch.inputs);
      expect([ours.irVersion, ours.opset]).toEqual([torch.irVersion, torch.opset]);
      // The one difference: PyTorch's exporter gives dimension 1 of `logits` a fresh symbolic
      // name ('Addlogits_dim_1': its shape inference loses the value through the
      // Reshape(-1, T, D) that has a dynamic batch), though it is always the context T. The
      // generator writes T itself, which only says more; mpc infers shapes from the graph
      // and does not read output dimensions beyond the batch symbol.
      const [want] = torch.outputs;
      expect(typeof want.dims[1]).toBe('string');
      expect(ours.outputs).toEqual([{ ...want, dims: [want.dims[0], CONFIG.context, want.dims[2]] }]);
    });

    it('compiles (fp32, batch 2) and its forward equals onnxruntime within 1e-4', async () => {
      const file = join(dir, `gpt-${v.opset}.onnx`);
      writeFileSync(file, bytes);
      const compiled = compileModel(file, { policy: 'fp32', batch: 2 });
      const tokens = Array.from({ length: 2 * CONFIG.context }, (_, i) => (i * 37 + 11) % CONFIG.vocab);
      const s = await ort.InferenceSession.create(bytes);
      const feed = new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [2, CONFIG.context]);
      const want = (await s.run({ tokens: feed })).logits.data as Float32Array;
      const got = runGraph(compiled.eval, { tokens: { dtype: 'i64', shape: [2, CONFIG.context], data: Int32Array.from(tokens) } }).get('logits')!.data;
      const scale = want.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      expect(scale).toBeGreaterThan(0);
      expect(maxRelErr(got, want, scale * 1e-2)).toBeLessThan(1e-4);
    });
  });
}

describe('gptOnnx', () => {
  it('is deterministic, and the seed changes the weights only', () => {
    const a = gptOnnx(CONFIG);
    expect(Buffer.from(gptOnnx(CONFIG)).equals(Buffer.from(a))).toBe(true);
    const b = gptOnnx({ ...CONFIG, seed: 1 });
    expect(b.length).toBe(a.length);
    expect(Buffer.from(b).equals(Buffer.from(a))).toBe(false);
  });

  it('GPT12 has 9,756,672 parameters (as PyTorch counts them)', () => {
    const n = gptParameters(GPT12).reduce((s, p) => s + p.dims.reduce((a, b) => a * b, 1), 0);
    expect(n).toBe(loadFixture('gpt12-saved-bytes.json').parameters);
    expect(n).toBe(9_756_672);
  });

  it('refuses impossible configurations in one line', () => {
    expect(() => checkGptConfig({ ...GPT12, width: 250 })).toThrow(/width 250 is not a multiple of heads 8/);
    expect(() => checkGptConfig({ ...GPT12, layers: 0 })).toThrow(/layers must be a positive integer/);
    expect(() => checkGptConfig({ ...GPT12, vocab: 1.5 })).toThrow(/vocab must be a positive integer/);
  });
});
