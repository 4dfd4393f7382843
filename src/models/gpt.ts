// A GPT of any depth and width written straight to ONNX, node for node what
// `torch.onnx.export` (training mode, no constant folding) writes for the module in
// models/export_gpt_deep.py — so the compiler can be measured on deep models without torch.
// test/gpt-generator.test.ts holds it to a committed PyTorch export (op sequence, wiring,
// attributes, constants, initializer names and shapes, io).
//
//   tokens int64 [N, T]
//   h = tok_emb[tokens] + pos_emb                  Gather + Add
//   per block b:  h = h + attn(ln1(h));  h = h + mlp(ln2(h))
//   logits = head(ln_f(h))                         float [N, T, V]
//
// Linear(in, out): the weight stays an [out, in] initializer read through Transpose, then
// MatMul and Add(bias, ·), as PyTorch exports a Linear on 3-D activations. Attention uses
// separate q/k/v Linears, scale 1/sqrt(D/H) and an additive causal mask (-1e4 above the
// diagonal) written as a Constant node per block, like the exporter writes a non-persistent
// buffer. GELU is the erf form. LayerNorm is LayerNormalization at opset 17 and the
// ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add expansion at opset 13.
//
// Weights: normal(0, 0.02) from a seeded generator, one stream per initializer (seeded by
// its name), so a block's weights do not depend on the depth; biases 0, LayerNorm 1/0.
import onnxProto from 'onnx-proto';
import type { onnx as O } from 'onnx-proto';

const onnx = onnxProto.onnx;
const { DataType } = onnx.TensorProto;
const { AttributeType } = onnx.AttributeProto;

export interface GptConfig {
  layers: number;
  width: number;
  heads: number;
  context: number;
  vocab: number;
  /** 'op17' (default): LayerNormalization; 'op13': the opset-13 expansion. */
  layerNorm?: 'op17' | 'op13';
  /** Seed of the weight generator (default 0). */
  seed?: number;
}

/** 12 pre-norm blocks, d 256, 8 heads, context 64, vocabulary 512: 9,756,672 parameters. */
export const GPT12: GptConfig = { layers: 12, width: 256, heads: 8, context: 64, vocab: 512 };

const MASK_NEG = -1e4;
const LN_EPS = 1e-5;
const INIT_STD = 0.02;

/** Throws a one-line RangeError for a configuration the model cannot have. */
export function checkGptConfig(cfg: GptConfig): void {
  for (const k of ['layers', 'width', 'heads', 'context', 'vocab'] as const) {
    const v = cfg[k];
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`gpt: ${k} must be a positive integer, got ${v}`);
  }
  if (cfg.width % cfg.heads) throw new RangeError(`gpt: width ${cfg.width} is not a multiple of heads ${cfg.heads}`);
  if (cfg.layerNorm !== undefined && cfg.layerNorm !== 'op17' && cfg.layerNorm !== 'op13')
    throw new RangeError(`gpt: layerNorm must be 'op17' or 'op13', got ${cfg.layerNorm}`);
  if (cfg.seed !== undefined && !Number.isSafeInteger(cfg.seed)) throw new RangeError(`gpt: seed must be an integer, got ${cfg.seed}`);
}

// ---- weights --------------------------------------------------------------------------------

/** FNV-1a of the seed and the name: each initializer gets its own stream. */
function streamSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0) ^ Math.floor(seed / 2 ** 32);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** mulberry32: uniform in [0, 1), 32 bits of state. */
function uniform(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** normal(0, std) by Box-Muller, two values per pair of uniforms. */
function normal(n: number, std: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  const u = uniform(seed);
  for (let i = 0; i < n; i += 2) {
    const r = std * Math.sqrt(-2 * Math.log(1 - u())); // 1 - u in (0, 1]: log is finite
    const a = 2 * Math.PI * u();
    out[i] = r * Math.cos(a);
    if (i + 1 < n) out[i + 1] = r * Math.sin(a);
  }
  return out;
}

// ---- protobuf pieces ------------------------------------------------------------------------

const bytesOf = (a: Float32Array | BigInt64Array): Uint8Array => {
  // raw_data is little-endian; typed arrays are in the host's order, little-endian on every
  // platform Node runs on, which this checks once rather than assumes silently.
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('gpt: big-endian hosts are not supported');
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
};

function floatTensor(name: string, dims: number[], data: Float32Array): O.ITensorProto {
  return { name, dims, dataType: DataType.FLOAT, rawData: bytesOf(data) };
}

type Attr = O.IAttributeProto;
const attrInt = (name: string, i: number): Attr => ({ name, type: AttributeType.INT, i });
const attrInts = (name: string, ints: number[]): Attr => ({ name, type: AttributeType.INTS, ints });
const attrFloat = (name: string, f: number): Attr => ({ name, type: AttributeType.FLOAT, f });

/** Nodes in export order, named the way the exporter names them: `/scope/Op`, `/scope/Op_1`. */
class GraphWriter {
  readonly nodes: O.INodeProto[] = [];
  private readonly used = new Map<string, number>();

  constructor(readonly opset: number) {}

  node(scope: string, op: string, inputs: string[], attrs: Attr[] = [], output?: string): string {
    const base = `${scope}/${op}`;
    const k = this.used.get(base) ?? 0;
    this.used.set(base, k + 1);
    const name = k ? `${base}_${k}` : base;
    const out = output ?? `${name}_output_0`;
    this.nodes.push({ name, opType: op, input: inputs, output: [out], attribute: attrs });
    return out;
  }

  constant(scope: string, tensor: O.ITensorProto): string {
    return this.node(scope, 'Constant', [], [{ name: 'value', type: AttributeType.TENSOR, t: tensor }]);
  }

  scalar(scope: string, v: number): string {
    return this.constant(scope, floatTensor('', [], Float32Array.of(v)));
  }

  shape(scope: string, dims: number[]): string {
    return this.constant(scope, { dims: [dims.length], dataType: DataType.INT64, rawData: bytesOf(BigInt64Array.from(dims, BigInt)) });
  }

  reshape(scope: string, x: string, dims: number[]): string {
    const allowzero = this.opset >= 14 ? [attrInt('allowzero', 0)] : []; // the attribute is new in opset 14
    return this.node(scope, 'Reshape', [x, this.shape(scope, dims)], allowzero);
  }

  transpose(scope: string, x: string, perm: number[]): string {
    return this.node(scope, 'Transpose', [x], [attrInts('perm', perm)]);
  }

  /** nn.Linear on 3-D activations: Transpose(W), MatMul, Add(bias, ·). */
  linear(scope: string, param: string, x: string, output?: string): string {
    const wt = this.transpose(scope, `${param}.weight`, [1, 0]);
    return this.node(scope, 'Add', [`${param}.bias`, this.node(scope, 'MatMul', [x, wt])], [], output);
  }

  layerNorm(scope: string, param: string, x: string): string {
    const [w, b] = [`${param}.weight`, `${param}.bias`];
    if (this.opset >= 17) return this.node(scope, 'LayerNormalization', [x, w, b], [attrInt('axis', -1), attrFloat('epsilon', LN_EPS)]);
    const centered = this.node(scope, 'Sub', [x, this.node(scope, 'ReduceMean', [x], [attrInts('axes', [-1])])]);
    const squared = this.node(scope, 'Pow', [centered, this.scalar(scope, 2)]);
    const variance = this.node(scope, 'ReduceMean', [squared], [attrInts('axes', [-1])]);
    const std = this.node(scope, 'Sqrt', [this.node(scope, 'Add', [variance, this.scalar(scope, LN_EPS)])]);
    const scaled = this.node(scope, 'Mul', [this.node(scope, 'Div', [centered, std]), w]);
    return this.node(scope, 'Add', [scaled, b]);
  }

  /** nn.GELU(): x * 0.5 * (1 + erf(x / sqrt 2)), in the exporter's order. */
  gelu(scope: string, x: string): string {
    const erf = this.node(scope, 'Erf', [this.node(scope, 'Div', [x, this.scalar(scope, Math.SQRT2)])]);
    const mul = this.node(scope, 'Mul', [x, this.node(scope, 'Add', [erf, this.scalar(scope, 1)])]);
    return this.node(scope, 'Mul', [mul, this.scalar(scope, 0.5)]);
  }
}

// ---- the model ------------------------------------------------------------------------------

function causalMask(t: number): Float32Array {
  const m = new Float32Array(t * t);
  for (let i = 0; i < t; i++) for (let j = i + 1; j < t; j++) m[i * t + j] = MASK_NEG;
  return m;
}

function attention(g: GraphWriter, cfg: GptConfig, s: string, p: string, x: string): string {
  const { context: t, heads, width } = cfg;
  const hd = width / heads;
  const split = (name: string) => g.reshape(s, g.linear(`${s}/${name}`, `${p}.${name}`, x), [-1, t, heads, hd]);
  const q = g.transpose(s, split('q'), [0, 2, 1, 3]); // [N, H, T, hd]
  const k = split('k'); // [N, T, H, hd], transposed to [N, H, hd, T] below
  const v = g.transpose(s, split('v'), [0, 2, 1, 3]);
  const scores = g.node(s, 'MatMul', [q, g.transpose(s, k, [0, 2, 3, 1])]);
  const scaled = g.node(s, 'Mul', [scores, g.scalar(s, 1 / Math.sqrt(hd))]);
  const masked = g.node(s, 'Add', [scaled, g.constant(s, floatTensor('', [t, t], causalMask(t)))]);
  const att = g.node(s, 'Softmax', [masked], [attrInt('axis', -1)]);
  const y = g.transpose(s, g.node(s, 'MatMul', [att, v]), [0, 2, 1, 3]);
  return g.linear(`${s}/proj`, `${p}.proj`, g.reshape(s, y, [-1, t, width]));
}

/** Initializer names and shapes, in the order PyTorch's named_parameters() lists them. */
export function gptParameters(cfg: GptConfig): { name: string; dims: number[] }[] {
  const { width: d, vocab, context } = cfg;
  const linear = (name: string, inp: number, out: number) => [
    { name: `${name}.weight`, dims: [out, inp] },
    { name: `${name}.bias`, dims: [out] },
  ];
  const norm = (name: string) => [{ name: `${name}.weight`, dims: [d] }, { name: `${name}.bias`, dims: [d] }];
  const params = [{ name: 'pos_emb', dims: [context, d] }, { name: 'tok_emb.weight', dims: [vocab, d] }];
  for (let b = 0; b < cfg.layers; b++) {
    const p = `blocks.${b}`;
    params.push(...norm(`${p}.ln1`));
    for (const n of ['q', 'k', 'v', 'proj']) params.push(...linear(`${p}.attn.${n}`, d, d));
    params.push(...norm(`${p}.ln2`), ...linear(`${p}.mlp.fc`, d, 4 * d), ...linear(`${p}.mlp.proj`, 4 * d, d));
  }
  params.push(...norm('ln_f'), ...linear('head', d, vocab));
  return params;
}

function initialValue(name: string, dims: number[], seed: number): Float32Array {
  const n = dims.reduce((a, b) => a * b, 1);
  const isNorm = /(^|\.)(ln1|ln2|ln_f)\.(weight|bias)$/.test(name);
  if (isNorm && name.endsWith('.weight')) return new Float32Array(n).fill(1);
  if (isNorm || name.endsWith('.bias')) return new Float32Array(n);
  return normal(n, INIT_STD, streamSeed(seed, name));
}

/** The model as a serialized ONNX ModelProto. */
export function gptOnnx(cfg: GptConfig): Uint8Array {
  checkGptConfig(cfg);
  const opset = cfg.layerNorm === 'op13' ? 13 : 17;
  const g = new GraphWriter(opset);

  let h = g.node('', 'Add', [g.node('/tok_emb', 'Gather', ['tok_emb.weight', 'tokens']), 'pos_emb']);
  for (let b = 0; b < cfg.layers; b++) {
    const s = `/blocks.${b}`;
    const p = `blocks.${b}`;
    h = g.node(s, 'Add', [h, attention(g, cfg, `${s}/attn`, `${p}.attn`, g.layerNorm(`${s}/ln1`, `${p}.ln1`, h))]);
    const fc = g.linear(`${s}/mlp/fc`, `${p}.mlp.fc`, g.layerNorm(`${s}/ln2`, `${p}.ln2`, h));
    h = g.node(s, 'Add', [h, g.linear(`${s}/mlp/proj`, `${p}.mlp.proj`, g.gelu(`${s}/mlp/act`, fc))]);
  }
  g.linear('/head', 'head', g.layerNorm('/ln_f', 'ln_f', h), 'logits');

  const seed = cfg.seed ?? 0;
  const tensorType = (elemType: number, dims: (number | string)[]): O.ITypeProto => ({
    tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) } },
  });
  const model: O.IModelProto = {
    irVersion: opset >= 17 ? 8 : 7, // what PyTorch writes for these opsets
    producerName: 'mpc-gpt',
    docString: `GPT: ${cfg.layers} blocks, width ${cfg.width}, ${cfg.heads} heads, context ${cfg.context}, vocabulary ${cfg.vocab}, seed ${seed}`,
    opsetImport: [{ domain: '', version: opset }],
    graph: {
      name: 'gpt',
      node: g.nodes,
      initializer: gptParameters(cfg).map(({ name, dims }) => floatTensor(name, dims, initialValue(name, dims, seed))),
      input: [{ name: 'tokens', type: tensorType(DataType.INT64, ['N', cfg.context]) }],
      output: [{ name: 'logits', type: tensorType(DataType.FLOAT, ['N', cfg.context, cfg.vocab]) }],
    },
  };
  return onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
}
