// ONNX → IR. Reads the protobuf with onnx-proto, turns initializers into parameters (float)
// or constants (integer), Constant nodes into constants, and checks every op against the
// op table, reporting all unsupported ops at once.
import { closeSync, constants as fsConstants, fstatSync, openSync, readFileSync, readSync, realpathSync, statSync, type Stats } from 'node:fs';
import { dirname, isAbsolute, resolve, sep } from 'node:path';
import onnxProto from 'onnx-proto';
import type { onnx as O } from 'onnx-proto';
import { byteSize, fromOnnx, isFloat, decode, type DType } from '../ir/dtypes.js';
import { emptyGraph, type AttrValue, type Attrs, type Dim, type Graph } from '../ir/graph.js';
import { sizeOf, type Tensor } from '../ir/tensor.js';
import { hasOp, opRow } from '../ops/table.js';
import { problemLine, validateModel } from './validate.js';

const onnx = onnxProto.onnx;

// InputError lives in the dependency-free runtime module (the runtime copied next to a
// compiled program throws it too); it is re-exported here for the compiler's modules.
import { InputError } from '../runtime/errors.js';
export { InputError };

type Long = { toNumber(): number } | number;
const num = (v: Long | null | undefined): number => (v === null || v === undefined ? 0 : typeof v === 'number' ? v : v.toNumber());

export interface ImportOptions {
  /** Folder that external tensor data must stay inside (defaults to the model's folder). */
  baseDir?: string;
  /**
   * Graph inputs bound to fixed contents (`--const NAME=FILE`): they become constants, so
   * shapes, axes or masks computed from them are known at compile time.
   */
  consts?: Record<string, Tensor>;
  /** Byte limit of one tensor (validate.ts MAX_BUFFER_BYTES by default). */
  maxBufferBytes?: number;
}

/** The op types of the model imported last (for the internal-error report: which ops were involved). */
let lastOps: string[] = [];
export function lastImportedOps(): readonly string[] {
  return lastOps;
}

export function importOnnxFile(path: string, opts: ImportOptions = {}): Graph {
  let bytes: Uint8Array;
  try {
    if (!statSync(path).isFile()) throw new InputError(`${path}: not a file`);
    bytes = readFileSync(path);
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return importOnnx(bytes, { ...opts, baseDir: opts.baseDir ?? dirname(resolve(path)), label: path });
}

export function importOnnx(bytes: Uint8Array, opts: ImportOptions & { label?: string } = {}): Graph {
  const label = opts.label ?? 'model';
  let model: O.ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new InputError(`${label}: not a valid ONNX file (${(e as Error).message.split('\n')[0]})`);
  }
  const g = model.graph;
  if (!g || !g.node || g.node.length === 0 || num(model.irVersion) <= 0)
    throw new InputError(`${label}: not a valid ONNX file (no graph)`);
  lastOps = [...new Set(g.node.map((n) => n.opType || '?'))];
  const opset = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  const version = opset ? num(opset.version) : 0;
  if (!version) throw new InputError(`${label}: the model declares no opset for the default ONNX domain`);
  // Every structural problem (types, dimensions, data sizes, attributes, definitions, order) at once.
  const problems = validateModel(model, { maxBufferBytes: opts.maxBufferBytes });
  if (problems.length) throw new InputError(`${label}: invalid model: ${problemLine(problems)}`);

  // Every unsupported op, with its node names, in one error.
  const unsupported = new Map<string, string[]>();
  for (const n of g.node) {
    const type = n.opType ?? '';
    const domainOk = !n.domain || n.domain === 'ai.onnx';
    const row = domainOk && hasOp(type) ? opRow(type) : undefined;
    const inRange = row && row.domain === '' && (!row.opsets || (version >= row.opsets[0] && version <= row.opsets[1]));
    if (!inRange) {
      const key = domainOk ? type : `${n.domain}.${type}`;
      unsupported.set(key, [...(unsupported.get(key) ?? []), n.name || '(unnamed)']);
    }
  }
  if (unsupported.size) {
    const parts = [...unsupported].map(([op, names]) => `${op} (${names.slice(0, 3).join(', ')}${names.length > 3 ? `, +${names.length - 3} more` : ''})`);
    throw new InputError(`${label}: unsupported ops at opset ${version}: ${parts.join('; ')}`);
  }

  const graph = emptyGraph(g.name || 'model');
  graph.meta.opset = version;
  const baseDir = opts.baseDir;
  for (const t of g.initializer ?? []) {
    const tensor = tensorFromProto(t, baseDir, label);
    graph.values.set(t.name!, { name: t.name!, dtype: tensor.dtype, shape: [...tensor.shape], role: isFloat(tensor.dtype) ? 'param' : 'const', init: tensor });
  }
  for (const vi of g.input ?? []) {
    if (graph.values.has(vi.name!)) continue; // an initializer listed as input (old exporters)
    const { dtype, shape } = valueInfoType(vi, label);
    graph.values.set(vi.name!, { name: vi.name!, dtype, shape, role: 'input' });
    graph.inputs.push(vi.name!);
  }
  for (const [i, n] of g.node.entries()) {
    const name = n.name || `${n.opType}_${i}`;
    const attrs: Attrs = {};
    for (const a of n.attribute ?? []) attrs[a.name!] = attrValue(a, baseDir, label);
    if (n.opType === 'Constant') {
      const t = constantValue(attrs, name, label);
      const out = n.output![0];
      graph.values.set(out, { name: out, dtype: t.dtype, shape: [...t.shape], role: 'const', init: t });
      continue;
    }
    const outputs = [...(n.output ?? [])];
    if (n.opType === 'BatchNormalization') batchNormForm(name, attrs, outputs, version, model.producerName ?? '', label);
    for (const o of outputs) if (o) graph.values.set(o, { name: o, dtype: 'f32', shape: [], role: 'activation' });
    graph.nodes.push({ name, op: n.opType!, inputs: [...(n.input ?? [])], outputs, attrs });
  }
  // Training-mode BatchNormalization's extra outputs (saved statistics) that nothing reads.
  const read = new Set([...graph.nodes.flatMap((n) => n.inputs), ...(g.output ?? []).map((o) => o.name!)]);
  for (const n of graph.nodes)
    if (n.op === 'BatchNormalization' && n.outputs.length > 3) {
      const extra = n.outputs.slice(3).filter(Boolean);
      const used = extra.filter((o) => read.has(o));
      if (used.length) throw new InputError(`${label}: BatchNormalization '${n.name}': its saved_mean/saved_var outputs (${used.join(', ')}) are read by the model; mpc computes them only inside the gradient`);
      for (const o of extra) graph.values.delete(o);
      n.outputs = n.outputs.slice(0, 3);
    }
  // Each node's number of inputs and outputs against its op's row.
  const arity: string[] = [];
  for (const n of graph.nodes) {
    const row = opRow(n.op);
    const ins = n.inputs.length;
    if (ins < row.arity[0] || ins > row.arity[1]) arity.push(`node '${n.name}' (${n.op}) has ${ins} inputs, ${n.op} takes ${row.arity[0]}..${row.arity[1]}`);
    if (n.outputs.length > row.outputs) arity.push(`node '${n.name}' (${n.op}) has ${n.outputs.length} outputs, ${n.op} has ${row.outputs}`);
  }
  if (arity.length) throw new InputError(`${label}: invalid model: ${problemLine(arity)}`);
  for (const vi of g.output ?? []) {
    const v = graph.values.get(vi.name!);
    if (!v) throw new InputError(`${label}: graph output '${vi.name}' is not produced by any node`);
    const declared = valueInfoType(vi, label);
    graph.meta[`declared:${vi.name}`] = declared.dtype;
    graph.outputs.push(vi.name!);
  }
  for (const n of graph.nodes)
    for (const i of n.inputs)
      if (i && !graph.values.has(i)) throw new InputError(`${label}: node '${n.name}' reads '${i}', which nothing defines`);
  if (opts.consts) bindConstInputs(graph, opts.consts, label);
  return graph;
}

/** Makes the named graph inputs constants with the given contents (shapes and types checked). */
function bindConstInputs(g: Graph, consts: Record<string, Tensor>, label: string): void {
  for (const [name, t] of Object.entries(consts)) {
    const v = g.values.get(name);
    if (!v || v.role !== 'input')
      throw new InputError(`${label}: --const ${name}: the model has no input '${name}' (inputs: ${g.inputs.join(', ') || 'none'})`);
    if (t.shape.length !== v.shape.length || v.shape.some((d, k) => typeof d === 'number' && d !== t.shape[k]))
      throw new InputError(`${label}: --const ${name}: shape [${t.shape}] does not fit the input's [${v.shape}]`);
    const floatIn = isFloat(v.dtype);
    if (floatIn !== isFloat(t.dtype) || (v.dtype === 'bool') !== (t.dtype === 'bool'))
      throw new InputError(`${label}: --const ${name}: the data is ${t.dtype}, the input is ${v.dtype}`);
    const data = floatIn ? Float32Array.from(t.data) : Int32Array.from(t.data);
    g.values.set(name, { name, dtype: v.dtype, shape: [...t.shape], role: 'const', init: { dtype: v.dtype, shape: [...t.shape], data } });
    g.inputs = g.inputs.filter((i) => i !== name);
  }
}

/**
 * BatchNormalization in the one form mpc's row takes. Opsets 9-13 have no training_mode
 * attribute: the node is in training mode when it has more than one output (Y, running mean
 * and variance, saved mean and variance), so it gets training_mode=1. PyTorch updates its
 * running variance with the unbiased batch variance, where the ONNX definition uses the
 * population variance; exports of PyTorch (producer 'pytorch') keep PyTorch's numbers through
 * the internal attribute running_var_unbiased.
 */
function batchNormForm(name: string, attrs: Attrs, outputs: string[], opset: number, producer: string, label: string): void {
  if (opset < 14 && outputs.filter(Boolean).length > 1) {
    if (attrs.training_mode !== undefined) throw new InputError(`${label}: BatchNormalization '${name}': training_mode is an attribute of opset 14+, the model is opset ${opset}`);
    attrs.training_mode = 1;
  }
  if (attrs.training_mode === 1 && producer === 'pytorch') attrs.running_var_unbiased = 1;
}

function valueInfoType(vi: O.IValueInfoProto, label: string): { dtype: DType; shape: Dim[] } {
  const tt = vi.type?.tensorType;
  if (!tt) throw new InputError(`${label}: input/output '${vi.name}' is not a tensor`);
  let dtype: DType;
  try {
    dtype = fromOnnx(tt.elemType ?? 0);
  } catch (e) {
    throw new InputError(`${label}: '${vi.name}': ${(e as Error).message}`);
  }
  const shape: Dim[] = (tt.shape?.dim ?? []).map((d, k) => {
    // The `value` oneof says which of dim_value / dim_param is set (a dim_value may be 0).
    const which = (d as { value?: string }).value;
    if (which === 'dimValue' || (!which && !d.dimParam && num(d.dimValue) > 0)) return num(d.dimValue);
    return d.dimParam || `${vi.name}:${k}`;
  });
  return { dtype, shape };
}

function constantValue(attrs: Attrs, name: string, label: string): Tensor {
  const v = attrs.value;
  if (v && typeof v === 'object' && !Array.isArray(v)) return v as Tensor;
  if (typeof attrs.value_float === 'number') return { dtype: 'f32', shape: [], data: new Float32Array([attrs.value_float]) };
  if (typeof attrs.value_int === 'number') return { dtype: 'i64', shape: [], data: new Int32Array([attrs.value_int]) };
  if (Array.isArray(attrs.value_floats)) return { dtype: 'f32', shape: [attrs.value_floats.length], data: Float32Array.from(attrs.value_floats as number[]) };
  if (Array.isArray(attrs.value_ints)) return { dtype: 'i64', shape: [attrs.value_ints.length], data: Int32Array.from(attrs.value_ints as number[]) };
  throw new InputError(`${label}: Constant '${name}' has no supported value attribute`);
}

function attrValue(a: O.IAttributeProto, baseDir: string | undefined, label: string): AttrValue {
  const T = onnx.AttributeProto.AttributeType;
  switch (a.type) {
    case T.FLOAT:
      return a.f ?? 0;
    case T.INT:
      return num(a.i);
    case T.STRING:
      return new TextDecoder().decode(a.s ?? new Uint8Array());
    case T.TENSOR:
      return tensorFromProto(a.t!, baseDir, label);
    case T.FLOATS:
      return [...(a.floats ?? [])];
    case T.INTS:
      return (a.ints ?? []).map(num);
    case T.STRINGS:
      return (a.strings ?? []).map((s) => new TextDecoder().decode(s));
    default:
      throw new InputError(`${label}: attribute '${a.name}' has a type mpc does not read (${a.type})`);
  }
}

/** Reads a TensorProto in any storage form into a host tensor. */
export function tensorFromProto(t: O.ITensorProto, baseDir: string | undefined, label: string): Tensor {
  let dtype: DType;
  try {
    dtype = fromOnnx(t.dataType ?? 0);
  } catch (e) {
    throw new InputError(`${label}: tensor '${t.name}': ${(e as Error).message}`);
  }
  const shape = (t.dims ?? []).map(num);
  const n = sizeOf(shape);
  let raw: Uint8Array | undefined;
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) raw = readExternal(t, baseDir, label);
  else if (t.rawData && t.rawData.length) raw = t.rawData;
  const fail = (what: string) => new InputError(`${label}: tensor '${t.name}' ${what}`);
  if (raw) {
    const need = n * byteSize(dtype);
    if (raw.length !== need) throw fail(`has ${raw.length} bytes of data, expected ${need}`);
    if (dtype === 'f32' || dtype === 'i32') {
      // A view of the file's bytes where raw_data is 4-byte aligned (payloads are never
      // written), else one aligned copy.
      let bytes = raw;
      if (raw.byteOffset % 4 !== 0) {
        bytes = new Uint8Array(need);
        bytes.set(raw);
      }
      const data = dtype === 'f32' ? new Float32Array(bytes.buffer, bytes.byteOffset, n) : new Int32Array(bytes.buffer, bytes.byteOffset, n);
      return { dtype, shape, data };
    }
    const buf = new Uint8Array(need);
    buf.set(raw); // copy: raw_data need not be aligned for a typed-array view
    return { dtype, shape, data: decodeRaw(dtype, buf, n, fail) };
  }
  let values: number[];
  if (dtype === 'f32' && t.floatData?.length) values = t.floatData;
  else if (t.doubleData?.length) values = t.doubleData;
  else if (t.int64Data?.length) values = t.int64Data.map(num);
  else if (t.int32Data?.length) {
    // f16/bf16/fp8 are stored as their bit patterns in int32_data.
    values = isFloat(dtype) && dtype !== 'f32' ? t.int32Data.map((b) => decode(dtype as never, b)) : t.int32Data;
  } else values = [];
  if (values.length !== n) throw fail(`has ${values.length} values, expected ${n}`);
  return { dtype, shape, data: toData(dtype, values, fail) };
}

function toData(dtype: DType, values: ArrayLike<number>, fail: (w: string) => Error): Float32Array | Int32Array {
  if (isFloat(dtype)) return Float32Array.from(values);
  const out = new Int32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v > 2147483647 || v < -2147483648) {
      // i64 is carried as i32 (WGSL has no 64-bit integers); INT64 extremes used as "to the end" clamp.
      if (dtype !== 'i64') throw fail(`value ${v} is out of range`);
      out[i] = v > 0 ? 2147483647 : -2147483648;
    } else out[i] = v;
  }
  return out;
}

function decodeRaw(dtype: DType, buf: Uint8Array, n: number, fail: (w: string) => Error): Float32Array | Int32Array {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  switch (dtype) {
    case 'f32':
      return new Float32Array(buf.buffer, 0, n);
    case 'f16':
    case 'bf16': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = decode(dtype, dv.getUint16(2 * i, true));
      return out;
    }
    case 'f8e4m3fn':
    case 'f8e5m2':
      return Float32Array.from(buf, (b) => decode(dtype, b));
    case 'i64': {
      const vals = new Array<number>(n);
      for (let i = 0; i < n; i++) vals[i] = Number(dv.getBigInt64(8 * i, true));
      return toData(dtype, vals, fail);
    }
    case 'i32':
      return new Int32Array(buf.buffer, 0, n);
    case 'bool':
      return Int32Array.from(buf, (b) => (b ? 1 : 0));
  }
}

/**
 * External data must be a regular file inside the model's folder: no absolute paths, `..`,
 * or symlinks out; folders, FIFOs, sockets and device files are refused without being opened
 * (a FIFO would block forever), and only the tensor's own byte range is read.
 */
function readExternal(t: O.ITensorProto, baseDir: string | undefined, label: string): Uint8Array {
  const kv = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  const loc = kv.get('location');
  const fail = (what: string) => new InputError(`${label}: tensor '${t.name}': ${what}`);
  if (!loc || !baseDir) throw new InputError(`${label}: tensor '${t.name}' has external data without a location`);
  if (loc.includes('\0')) throw fail(`external data path '${loc.replace(/\0/g, '\\0')}' holds a NUL character`);
  if (isAbsolute(loc) || /^[a-zA-Z]:[\\/]/.test(loc) || loc.split(/[\\/]/).includes('..'))
    throw fail(`external data path '${loc}' points outside the model's folder`);
  const intKey = (key: string): number | undefined => {
    if (!kv.has(key)) return undefined;
    const s = kv.get(key)!.trim();
    const v = Number(s);
    if (!/^\d+$/.test(s) || !Number.isSafeInteger(v)) throw fail(`external data ${key} '${kv.get(key)}' is not a non-negative integer`);
    return v;
  };
  const offset = intKey('offset') ?? 0;
  const length = intKey('length');
  let root: string;
  let real: string;
  try {
    root = realpathSync(baseDir);
    real = realpathSync(resolve(baseDir, loc));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw fail(`external data file '${loc}' not found`);
    if (code === 'ENOTDIR') throw fail(`external data path '${loc}': a part of the path is a file, not a folder`);
    if (code === 'ELOOP') throw fail(`external data path '${loc}': too many levels of symbolic links`);
    throw fail(`external data file '${loc}' cannot be read (${code ?? (e as Error).message})`);
  }
  if (!real.startsWith(root + sep)) throw fail(`external data path '${loc}' resolves outside the model's folder`);
  // stat before open: opening a FIFO for reading blocks until a writer appears.
  const kind = (st: Stats): string | undefined =>
    st.isFile() ? undefined : st.isDirectory() ? 'a folder' : st.isFIFO() ? 'a FIFO (named pipe)' : st.isSocket() ? 'a socket' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device file' : 'not a regular file';
  const notFile = (what: string) => fail(`external data '${loc}' is ${what}, not a regular file`);
  let st: Stats;
  try {
    st = statSync(real);
  } catch (e) {
    throw fail(`external data file '${loc}' cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const k = kind(st);
  if (k) throw notFile(k);
  let fd: number;
  try {
    // O_NONBLOCK: should the path have been swapped for a FIFO since the stat, the open does not block.
    fd = openSync(real, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (e) {
    throw fail(`external data file '${loc}' cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    const fst = fstatSync(fd);
    const k2 = kind(fst);
    if (k2) throw notFile(k2);
    const size = fst.size;
    if (offset > size) throw fail(`external data offset ${offset} is past the end of '${loc}' (${size} bytes)`);
    const len = length ?? size - offset;
    if (offset + len > size) throw fail(`external data '${loc}' is truncated: offset ${offset} + length ${len} is past its end (${size} bytes)`);
    const out = new Uint8Array(len);
    let got = 0;
    while (got < len) {
      const r = readSync(fd, out, got, len - got, offset + got);
      if (r <= 0) throw fail(`external data '${loc}' is truncated (${size} bytes)`);
      got += r;
    }
    return out;
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw fail(`external data file '${loc}' cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  } finally {
    closeSync(fd);
  }
}
