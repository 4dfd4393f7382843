// `mpc export`: a compiled (and trained) model back to ONNX.
//
// fp32: the original model (the copy `mpc compile` keeps as model.onnx) with its float
// initializers replaced by the trained weights, in inference form (Dropout becomes Identity,
// BatchNormalization drops its training outputs and uses the running statistics).
//
// as-policy: the inference graph as mpc lowered it (ir.eval.json), written as ONNX nodes: the
// low-precision copies of the weights become BFLOAT16/FLOAT16 initializers, the Casts that
// the precision passes inserted stay, fp8 weights become FLOAT8E4M3FN/FLOAT8E5M2 initializers
// read through DequantizeLinear (opset 19) and fp8 activations QuantizeLinear/
// DequantizeLinear pairs. The graph's inputs and outputs keep their types; shapes are those
// of the compiled program (its batch).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import type { onnx as O } from 'onnx-proto';
import { decodeTensors } from '../data/tensor-files.js';
import { encode, floatInfo, fromOnnx, isFloat, roundArray, toOnnx, type DType, type FloatDType } from '../ir/dtypes.js';
import type { AttrValue } from '../ir/graph.js';
import { graphFromJson } from '../ir/serialize.js';
import { sizeOf, type Tensor } from '../ir/tensor.js';
import { opRow, hasOp } from '../ops/table.js';
import { scaleFromAmax } from '../ops/fp8.js';
import type { ProgramFile } from '../runtime/program-file.js';
import { InputError } from './import.js';
import { readWeightsFile } from './weights.js';

const onnx = onnxProto.onnx;
const T = onnx.TensorProto.DataType;

export interface ExportOptions {
  /** An output folder of `mpc compile`. */
  dir: string;
  /** Weights file (default: trained.safetensors of the folder, or the initial weights when there is none). */
  weights?: string;
  /** The mixed-precision inference graph instead of the fp32 original. */
  asPolicy?: boolean;
  /**
   * as-policy: nodes on bf16 values compute in f32 between Casts (the values between nodes,
   * hence every rounding, stay bf16), for runtimes without bf16 kernels (onnxruntime's CPU EP).
   */
  bf16ComputeF32?: boolean;
}

export interface ExportResult {
  bytes: Uint8Array;
  /** Which weights file was used (undefined: the initial weights). */
  weights?: string;
  /** Initializers that took trained values. */
  replaced: number;
  opset: number;
  nodes: number;
}

function readProgram(dir: string): ProgramFile {
  const pj = join(dir, 'program.json');
  if (!existsSync(pj)) throw new InputError(`${dir}: not an mpc output folder (no program.json); run 'mpc compile' first`);
  try {
    return JSON.parse(readFileSync(pj, 'utf8')) as ProgramFile;
  } catch (e) {
    throw new InputError(`${pj}: unreadable (${(e as Error).message})`);
  }
}

/** Initial tensors of the program (init file plus the all-zero ones), with given weights on top. */
function weightsOf(dir: string, program: ProgramFile, file: string | undefined): { tensors: Map<string, Tensor>; given: Map<string, Tensor> } {
  const initPath = join(dir, program.files.init);
  if (!existsSync(initPath)) throw new InputError(`${dir}: ${program.files.init} is missing; run 'mpc compile' again`);
  const tensors = decodeTensors(readFileSync(initPath), initPath).tensors;
  const given = file ? readWeightsFile(file) : new Map<string, Tensor>();
  for (const [n, t] of given) tensors.set(n, t);
  return { tensors, given };
}

/** The weights file an export uses: --weights FILE, else trained.safetensors when training wrote one. */
export function defaultWeights(dir: string, weights: string | undefined): string | undefined {
  if (weights && weights !== 'fp32') return weights;
  const trained = join(dir, 'trained.safetensors');
  return existsSync(trained) ? trained : undefined;
}

export function exportModel(o: ExportOptions): ExportResult {
  const program = readProgram(o.dir);
  const file = defaultWeights(o.dir, o.weights);
  return o.asPolicy ? exportPolicy(o, program, file) : exportFp32(o, program, file);
}

// ---------------------------------------------------------------------------------------------
// Tensors as TensorProto.

function le(bytes: number, write: (v: DataView) => void): Uint8Array {
  const b = new Uint8Array(bytes);
  write(new DataView(b.buffer));
  return b;
}

/** The values of `t` as ONNX raw data of type `d` (floats rounded to d, RNE; fp8 saturating). */
function rawData(t: Tensor, d: DType): Uint8Array {
  const n = t.data.length;
  switch (d) {
    case 'f32':
      return new Uint8Array(Float32Array.from(t.data).buffer);
    case 'f16':
    case 'bf16':
      return le(2 * n, (v) => t.data.forEach((x, i) => v.setUint16(2 * i, encode(d, x), true)));
    case 'f8e4m3fn':
    case 'f8e5m2':
      return Uint8Array.from(t.data, (x) => encode(d, x, { saturate: true }));
    case 'i64':
      return le(8 * n, (v) => t.data.forEach((x, i) => v.setBigInt64(8 * i, BigInt(Math.trunc(x)), true)));
    case 'i32':
      return new Uint8Array(Int32Array.from(t.data).buffer);
    case 'bool':
      return Uint8Array.from(t.data, (x) => (x !== 0 ? 1 : 0));
    default:
      throw new InputError(`cannot write a ${d} tensor to ONNX`);
  }
}

function tensorProto(name: string, t: Tensor, d: DType = t.dtype): O.ITensorProto {
  return { name, dims: [...t.shape], dataType: toOnnx(d), rawData: rawData(t, d) };
}

// ---------------------------------------------------------------------------------------------
// fp32: the original graph with trained initializers, in inference form.

function exportFp32(o: ExportOptions, program: ProgramFile, file: string | undefined): ExportResult {
  const src = program.files.model ? join(o.dir, program.files.model) : undefined;
  if (!src || !existsSync(src)) throw new InputError(`${o.dir}: holds no copy of the ONNX model (compiled by an older mpc); run 'mpc compile' again`);
  const model = onnx.ModelProto.decode(readFileSync(src));
  const g = model.graph!;
  const { tensors, given } = weightsOf(o.dir, program, file);
  const zeros = new Set(program.zeros ?? []);
  const inits = new Map((g.initializer ?? []).map((t) => [t.name!, t]));
  const unknown = [...given.keys()].filter((n) => !inits.has(n));
  if (unknown.length) throw new InputError(`--weights ${file}: ${unknown.length} tensor(s) name no initializer of the model: ${unknown.slice(0, 5).join(', ')}`);
  let replaced = 0;
  for (const init of g.initializer ?? []) {
    const d = fromOnnxOrUndefined(init.dataType ?? 0);
    if (!d || !isFloat(d)) continue;
    const dims = (init.dims ?? []).map(Number);
    let t = tensors.get(init.name!);
    if (!t && zeros.has(init.name!)) t = { dtype: 'f32', shape: dims, data: new Float32Array(sizeOf(dims)) };
    if (!t) continue;
    if (t.shape.join() !== dims.join()) {
      if (given.has(init.name!)) throw new InputError(`--weights ${file}: '${init.name}' is [${t.shape}], the model's initializer [${dims}]`);
      continue; // an internal value of the same name (not the initializer)
    }
    const p = tensorProto(init.name!, t, d);
    init.rawData = p.rawData!;
    init.floatData = [];
    init.doubleData = [];
    init.int32Data = [];
    init.externalData = [];
    init.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
    replaced++;
  }
  inferenceForm(g);
  return { bytes: onnx.ModelProto.encode(model).finish(), weights: file, replaced, opset: opsetOf(model), nodes: g.node!.length };
}

function fromOnnxOrUndefined(t: number): DType | undefined {
  try {
    return fromOnnx(t);
  } catch {
    return undefined;
  }
}

function opsetOf(m: O.IModelProto): number {
  const o = (m.opsetImport ?? []).find((x) => !x.domain || x.domain === 'ai.onnx');
  return Number(o?.version ?? 0);
}

/** Dropout → Identity; BatchNormalization without its training outputs (running statistics used). */
function inferenceForm(g: O.IGraphProto): void {
  const read = new Set([...(g.node ?? []).flatMap((n) => n.input ?? []), ...(g.output ?? []).map((v) => v.name!)]);
  for (const n of g.node ?? []) {
    if (n.opType === 'Dropout') {
      const mask = (n.output ?? [])[1];
      if (mask && read.has(mask)) throw new InputError(`Dropout '${n.name}': its mask output is read by the model; it has no inference form`);
      n.opType = 'Identity';
      n.input = [n.input![0]];
      n.output = [n.output![0]];
      n.attribute = [];
    } else if (n.opType === 'BatchNormalization') {
      const extra = (n.output ?? []).slice(1).filter((x) => x && read.has(x));
      if (extra.length) throw new InputError(`BatchNormalization '${n.name}': its outputs ${extra.join(', ')} are read by the model; it has no inference form`);
      n.output = [n.output![0]];
      n.attribute = (n.attribute ?? []).filter((a) => a.name !== 'training_mode');
    }
  }
}

// ---------------------------------------------------------------------------------------------
// as-policy: the lowered inference graph as ONNX nodes.

/** Attributes that ONNX types as FLOAT although their value may be a whole number. */
const FLOAT_ATTRS = new Set(['alpha', 'beta', 'epsilon', 'momentum', 'ratio', 'gamma', 'bias', 'lambd', 'min', 'max', 'threshold', 'spatial_scale', 'extrapolation_value', 'cubic_coeff_a', 'value_float']);

const A = onnx.AttributeProto.AttributeType;

function attrProto(name: string, v: AttrValue, type?: number): O.IAttributeProto {
  if (typeof v === 'string') return { name, type: A.STRING, s: new TextEncoder().encode(v) };
  if (typeof v === 'number') {
    const f = type === A.FLOAT || (type === undefined && (FLOAT_ATTRS.has(name) || !Number.isInteger(v)));
    return f ? { name, type: A.FLOAT, f: v } : { name, type: A.INT, i: v };
  }
  if (Array.isArray(v)) {
    if (v.some((x) => typeof x === 'string')) return { name, type: A.STRINGS, strings: (v as string[]).map((x) => new TextEncoder().encode(x)) };
    const f = type === A.FLOATS || (type === undefined && (v as number[]).some((x) => !Number.isInteger(x)));
    return f ? { name, type: A.FLOATS, floats: v as number[] } : { name, type: A.INTS, ints: v as number[] };
  }
  return { name, type: A.TENSOR, t: tensorProto('', v as Tensor) };
}

interface Builder {
  nodes: O.INodeProto[];
  inits: Map<string, O.ITensorProto>;
  dtype: Map<string, DType>;
  shape: Map<string, number[]>;
  n: number;
}

function emit(b: Builder, op: string, inputs: string[], outputs: string[], attrs: O.IAttributeProto[] = [], name?: string): void {
  b.nodes.push({ opType: op, input: inputs, output: outputs, attribute: attrs, name: name ?? `${outputs[0]}.${op}` });
}

/**
 * An ONNX MatMul for mpc's, whose attributes (transA/transB, permA/permB/permY: transposes
 * folded into the product) ONNX's MatMul does not have: Transposes of the operands and of the
 * product around a plain MatMul.
 */
function emitMatMul(b: Builder, n: { name: string; inputs: string[] }, inputs: string[], outputs: string[], attrs: O.IAttributeProto[]): void {
  const own = new Set(['transA', 'transB', 'permA', 'permB', 'permY']);
  const ints = (a: O.IAttributeProto | undefined) => (a?.ints ?? []).map(Number);
  const find = (k: string) => attrs.find((a) => a.name === k);
  const operand = (k: 0 | 1): string => {
    const x = inputs[k];
    // The rank of the graph's operand (x may be its f32 or dequantized stand-in).
    const rank = b.shape.get(n.inputs[k])!.length;
    const perm = find(k ? 'permB' : 'permA') ? ints(find(k ? 'permB' : 'permA')) : [...Array(rank).keys()];
    if (Number(find(k ? 'transB' : 'transA')?.i ?? 0) === 1) [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
    if (perm.every((p, i) => p === i)) return x;
    const t = `${outputs[0]}.operand${k}`;
    emit(b, 'Transpose', [x], [t], [{ name: 'perm', type: A.INTS, ints: perm }]);
    b.dtype.set(t, b.dtype.get(x)!);
    return t;
  };
  const ins = [operand(0), operand(1), ...inputs.slice(2)];
  const rest = attrs.filter((a) => !own.has(a.name!));
  const permY = find('permY');
  if (!permY) return emit(b, 'MatMul', ins, outputs, rest, n.name);
  const z = `${outputs[0]}.product`;
  emit(b, 'MatMul', ins, [z], rest, n.name);
  b.dtype.set(z, b.dtype.get(outputs[0])!);
  emit(b, 'Transpose', [z], outputs, [{ name: 'perm', type: A.INTS, ints: ints(permY) }]);
}

function constant(b: Builder, name: string, t: Tensor, d: DType = t.dtype): string {
  if (!b.inits.has(name)) b.inits.set(name, tensorProto(name, t, d));
  b.dtype.set(name, d);
  b.shape.set(name, [...t.shape]);
  return name;
}

/** `x` in f32: itself, or a Cast (one per value). */
function asF32(b: Builder, x: string): string {
  if (!x || b.dtype.get(x) === 'f32' || !isFloat(b.dtype.get(x) ?? 'f32')) return x;
  const y = `${x}.to_f32`;
  if (!b.dtype.has(y)) {
    emit(b, 'Cast', [x], [y], [{ name: 'to', type: A.INT, i: T.FLOAT }]);
    b.dtype.set(y, 'f32');
  }
  return y;
}

interface Fp8Act {
  x: string;
  scale: number;
  current: boolean;
  margin: number;
  format: FloatDType;
}

function exportPolicy(o: ExportOptions, program: ProgramFile, file: string | undefined): ExportResult {
  const irPath = join(o.dir, program.files.evalGraph);
  if (!existsSync(irPath)) throw new InputError(`${o.dir}: ${program.files.evalGraph} is missing; run 'mpc compile' again`);
  const { tensors, given } = weightsOf(o.dir, program, file);
  for (const z of program.zeros ?? []) if (!tensors.has(z)) tensors.set(z, { dtype: 'f32', shape: [], data: new Float32Array(0) });
  const json = JSON.parse(readFileSync(irPath, 'utf8')) as { values: { name: string; shape: number[]; dtype: DType; role: string }[] };
  // Zero tensors: their shape comes from the graph.
  for (const v of json.values)
    if ((program.zeros ?? []).includes(v.name) && !given.has(v.name)) tensors.set(v.name, { dtype: v.dtype, shape: v.shape, data: isFloat(v.dtype) ? new Float32Array(sizeOf(v.shape)) : new Int32Array(sizeOf(v.shape)) });
  const g = graphFromJson(json, tensors);
  const orig = program.files.model && existsSync(join(o.dir, program.files.model)) ? onnx.ModelProto.decode(readFileSync(join(o.dir, program.files.model))) : undefined;
  const origAttrTypes = new Map<string, Map<string, number>>();
  for (const n of orig?.graph?.node ?? []) origAttrTypes.set(n.name ?? '', new Map((n.attribute ?? []).map((a) => [a.name!, a.type!])));

  // Unsupported internal ops, all at once.
  const internal = new Set(['mpc.View', 'mpc.Fp8Stats', 'mpc.QuantizeFp8']);
  const bad = [...new Set(g.nodes.filter((n) => (n.op.startsWith('mpc.') && !internal.has(n.op)) || (!n.op.startsWith('mpc.') && !hasOp(n.op))).map((n) => n.op))];
  if (bad.length) throw new InputError(`${o.dir}: the inference graph holds ops with no ONNX form: ${bad.join(', ')}; export it with --weights fp32 instead of --as-policy`);

  const usesFp8 = g.nodes.some((n) => n.op === 'mpc.QuantizeFp8');
  const opset = Math.max(Number(g.meta.opset ?? 13), usesFp8 ? 19 : 13);
  const b: Builder = { nodes: [], inits: new Map(), dtype: new Map(), shape: new Map(), n: 0 };
  // Values known at export time: initializers and what folds from them (weight casts, fp8 weights).
  const known = new Map<string, Tensor>();
  for (const v of g.values.values()) {
    b.dtype.set(v.name, v.dtype);
    b.shape.set(v.name, v.shape as number[]);
    if (v.init) known.set(v.name, v.init);
  }
  const stats = new Map<string, Fp8Act & { known?: Tensor }>();
  const quantized = new Map<string, string>(); // fp8 value → its inverse scale value
  const use = (x: string): string => {
    if (x && known.has(x) && !b.inits.has(x)) constant(b, x, known.get(x)!, b.dtype.get(x));
    return x;
  };
  for (const n of g.nodes) {
    const attrs = Object.entries(n.attrs).map(([k, v]) => attrProto(k, v, origAttrTypes.get(n.name)?.get(k)));
    if (n.op === 'Cast' && known.has(n.inputs[0])) {
      const to = fromOnnx(Number(n.attrs.to));
      const t = known.get(n.inputs[0])!;
      known.set(n.outputs[0], { dtype: to, shape: t.shape, data: isFloat(to) ? roundArray(to, t.data) : Int32Array.from(t.data, Math.trunc) });
      continue;
    }
    if (n.op === 'mpc.Fp8Stats') {
      const format = fromOnnx(Number(n.attrs.to)) as FloatDType;
      const prev = known.get(n.inputs[1])?.data[0] ?? 1;
      const act: Fp8Act = { x: n.inputs[0], scale: prev, current: Number(n.attrs.current) === 1, margin: Number(n.attrs.margin ?? 0), format };
      const x = known.get(n.inputs[0]);
      if (x) {
        // A weight: its scale as the program computes it (from its own amax when scaling is current).
        let amax = 0;
        for (const v of x.data) amax = Math.max(amax, Math.abs(v));
        const scale = act.current ? scaleFromAmax(amax, floatInfo(format).maxFinite, act.margin, prev) : prev;
        stats.set(n.outputs[0], { ...act, scale, known: x });
      } else stats.set(n.outputs[0], act);
      continue;
    }
    if (n.op === 'mpc.QuantizeFp8') {
      const s = stats.get(n.inputs[1]);
      if (!s) throw new Error(`QuantizeFp8 '${n.name}': no statistics`);
      const [q, sinv] = n.outputs;
      quantized.set(q, sinv);
      if (s.known) {
        known.set(q, { dtype: s.format, shape: s.known.shape, data: roundArray(s.format, Float32Array.from(s.known.data, (v) => Math.fround(v * s.scale)), undefined) });
        known.set(sinv, { dtype: 'f32', shape: [], data: Float32Array.of(1 / s.scale) });
        b.shape.set(sinv, []);
        continue;
      }
      const xf = asF32(b, s.x);
      const zp = constant(b, `${q}.zero_point`, { dtype: s.format, shape: [], data: new Float32Array(1) });
      if (s.current) {
        const abs = `${q}.abs`;
        const amax = `${q}.amax`;
        emit(b, 'Abs', [xf], [abs]);
        emit(b, 'ReduceMax', [abs], [amax], [{ name: 'keepdims', type: A.INT, i: 0 }]);
        const fmax = constant(b, `${q}.fp8_max`, { dtype: 'f32', shape: [], data: Float32Array.of(floatInfo(s.format).maxFinite) });
        const two = constant(b, `${q}.margin`, { dtype: 'f32', shape: [], data: Float32Array.of(2 ** s.margin) });
        const zero = constant(b, `${q}.zero`, { dtype: 'f32', shape: [], data: new Float32Array(1) });
        const prev = constant(b, `${q}.previous_scale`, { dtype: 'f32', shape: [], data: Float32Array.of(s.scale) });
        emit(b, 'Div', [fmax, amax], [`${q}.ratio`]);
        emit(b, 'Div', [`${q}.ratio`, two], [`${q}.scale_new`]);
        emit(b, 'Greater', [amax, zero], [`${q}.usable`]);
        emit(b, 'Where', [`${q}.usable`, `${q}.scale_new`, prev], [`${q}.scale`]);
        emit(b, 'Reciprocal', [`${q}.scale`], [sinv]);
      } else constant(b, sinv, { dtype: 'f32', shape: [], data: Float32Array.of(1 / s.scale) });
      emit(b, 'QuantizeLinear', [xf, sinv, zp], [q], [{ name: 'saturate', type: A.INT, i: 1 }]);
      b.dtype.set(sinv, 'f32');
      continue;
    }
    if (n.op === 'mpc.View') {
      const shape = constant(b, `${n.outputs[0]}.shape`, { dtype: 'i64', shape: [(n.attrs.shape as number[]).length], data: Int32Array.from(n.attrs.shape as number[]) });
      emit(b, 'Reshape', [use(n.inputs[0]), shape], n.outputs, [], n.name);
      continue;
    }
    const spec = opRow(n.op).fp8;
    if (spec && spec.operands.some((i) => quantized.has(n.inputs[i]))) {
      // An fp8 GEMM: operands dequantized to f32 (scale_inv), f32 accumulation, the result in its type.
      const inputs = n.inputs.slice(0, spec.scaleInputs[0]).map((x, i) => {
        if (!x) return x;
        if (spec.operands.includes(i) && quantized.has(x)) {
          const dq = `${x}.dequantized`;
          if (!b.dtype.has(dq)) {
            // Weights through DequantizeLinear; activations through Cast and Mul (onnxruntime
            // fuses DequantizeLinear pairs before a MatMul into an integer kernel without fp8).
            if (known.has(x)) emit(b, 'DequantizeLinear', [use(x), use(quantized.get(x)!)], [dq]);
            else {
              emit(b, 'Cast', [x], [`${x}.to_f32`], [{ name: 'to', type: A.INT, i: T.FLOAT }]);
              emit(b, 'Mul', [`${x}.to_f32`, use(quantized.get(x)!)], [dq]);
            }
          }
          b.dtype.set(dq, 'f32');
          return dq;
        }
        return asF32(b, use(x));
      });
      while (inputs.length && !inputs[inputs.length - 1]) inputs.pop();
      const out = n.outputs[0];
      const to = b.dtype.get(out)!;
      const acc = to === 'f32' ? out : `${out}.f32`;
      if (n.op === 'MatMul') {
        b.dtype.set(acc, 'f32');
        emitMatMul(b, n, inputs, [acc], attrs.filter((a) => a.name !== 'to'));
      } else emit(b, n.op, inputs, [acc, ...n.outputs.slice(1)], attrs.filter((a) => a.name !== 'to'), n.name);
      if (acc !== out) emit(b, 'Cast', [acc], [out], [{ name: 'to', type: A.INT, i: toOnnx(to) }]);
      continue;
    }
    if (n.op.startsWith('mpc.')) throw new Error(`${n.op} '${n.name}' left unexported`);
    if (n.op === 'MatMul') {
      emitMatMul(b, n, n.inputs.map(use), n.outputs, attrs);
      continue;
    }
    emit(b, n.op, n.inputs.map(use), n.outputs, opset >= 18 ? axesAsInput(b, n.op, n.outputs[0], attrs) : attrs, n.name);
    if (opset >= 18 && /^Reduce/.test(n.op) && n.op !== 'ReduceSum' && n.attrs.axes !== undefined) b.nodes[b.nodes.length - 1].input!.push(`${n.outputs[0]}.axes`);
  }
  for (const x of g.outputs) use(x);
  const nodes = o.bf16ComputeF32 ? bf16InF32(b) : b.nodes;

  const vi = (name: string, elem: number, shape: number[]): O.IValueInfoProto => ({
    name,
    type: { tensorType: { elemType: elem, shape: { dim: shape.map((d) => ({ dimValue: d })) } } },
  });
  const origType = new Map([...(orig?.graph?.input ?? []), ...(orig?.graph?.output ?? [])].map((v) => [v.name!, v.type?.tensorType?.elemType ?? 0]));
  const ioType = (x: string) => origType.get(x) || toOnnx(b.dtype.get(x)!);
  const model: O.IModelProto = {
    irVersion: opset >= 19 ? 9 : Math.max(Number(orig?.irVersion ?? 7), 7),
    producerName: 'mpc',
    producerVersion: '0.1.0',
    opsetImport: [{ domain: '', version: opset }],
    graph: {
      name: `${g.name} (${program.policy})`,
      node: nodes,
      initializer: [...b.inits.values()],
      input: g.inputs.map((x) => vi(x, ioType(x), b.shape.get(x)!)),
      output: g.outputs.map((x) => vi(x, ioType(x), b.shape.get(x)!)),
    },
  };
  return { bytes: onnx.ModelProto.encode(model).finish(), weights: file, replaced: given.size, opset, nodes: nodes.length };
}

/** From opset 18 the reductions (other than ReduceSum, from 13) take their axes as an input. */
function axesAsInput(b: Builder, op: string, out: string, attrs: O.IAttributeProto[]): O.IAttributeProto[] {
  const axes = attrs.find((a) => a.name === 'axes');
  if (!/^Reduce/.test(op) || op === 'ReduceSum' || !axes) return attrs;
  const list = (axes.ints ?? []).map(Number);
  constant(b, `${out}.axes`, { dtype: 'i64', shape: [list.length], data: Int32Array.from(list) });
  return attrs.filter((a) => a !== axes);
}

/** Ops that only convert (they handle bf16 in every runtime that knows the type). */
const CONVERSIONS = new Set(['Cast', 'QuantizeLinear', 'DequantizeLinear']);

/**
 * Every node that reads or writes bf16 computes in f32 instead: its bf16 inputs are cast to
 * f32 and its bf16 outputs computed in f32 and cast back to bf16. The values between nodes
 * keep their bf16 rounding; only the arithmetic inside a node is wider (mpc accumulates
 * low-precision GEMMs in f32 too).
 */
function bf16InF32(b: Builder): O.INodeProto[] {
  const out: O.INodeProto[] = [];
  const widened = new Set<string>();
  const isBf16 = (x: string) => !!x && b.dtype.get(x) === 'bf16';
  for (const n of b.nodes) {
    if (CONVERSIONS.has(n.opType!) || ![...n.input!, ...n.output!].some(isBf16)) {
      out.push(n);
      continue;
    }
    const inputs = n.input!.map((x) => {
      if (!isBf16(x)) return x;
      const y = `${x}.as_f32`;
      if (!widened.has(y)) {
        out.push({ opType: 'Cast', input: [x], output: [y], attribute: [{ name: 'to', type: A.INT, i: T.FLOAT }], name: `${y}.Cast` });
        widened.add(y);
      }
      return y;
    });
    const casts: O.INodeProto[] = [];
    const outputs = n.output!.map((x) => {
      if (!isBf16(x)) return x;
      casts.push({ opType: 'Cast', input: [`${x}.computed_f32`], output: [x], attribute: [{ name: 'to', type: A.INT, i: T.BFLOAT16 }], name: `${x}.Cast` });
      return `${x}.computed_f32`;
    });
    out.push({ ...n, input: inputs, output: outputs }, ...casts);
  }
  return out;
}
