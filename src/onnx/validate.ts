// Model validation, run by the importer on the decoded protobuf before anything else reads
// it (like onnx.checker, plus mpc's own limits). It looks at every graph input and output,
// initializer, node and attribute and collects *all* problems, each naming the tensor or node
// it is about; the importer reports them as one InputError line. What passes here is a model
// whose shape functions get well-formed inputs: dimensions are non-negative integers that fit
// a device buffer, attribute values have the kind their name calls for and are finite, every
// value has exactly one definition, and the nodes are in an order that computes each value
// before it is read.
//
// checkShapes is the second half: after shapes are inferred (and symbolic dimensions bound),
// every value's shape must still be made of such dimensions, so that a model whose computed
// shapes go wrong (a Reshape to a negative size, a Slice past the end) is reported as the
// model's problem, with the node that produced it, before any later pass or the code generator
// sees it.
import onnxProto from 'onnx-proto';
import type { onnx as O } from 'onnx-proto';
import { byteSize, fromOnnx, isFloat, type DType } from '../ir/dtypes.js';
import type { Graph } from '../ir/graph.js';

const onnx = onnxProto.onnx;

/**
 * The largest tensor mpc accepts, in bytes as stored on the device (i64 is carried as i32).
 * WebGPU's default `maxBufferSize` is 256 MiB and adapters commonly offer up to 2-4 GiB; a
 * binding is addressed with u32 element indices. 2^31 bytes keeps every index and byte offset
 * of a tensor inside a signed 32-bit range. Pass `maxBufferBytes` to use a device's own limit.
 */
export const MAX_BUFFER_BYTES = 2 ** 31;
/** The largest single dimension (ONNX allows int64; mpc indexes with 32-bit integers). */
export const MAX_DIM = 2 ** 31 - 1;
/** The newest default-domain opset an ONNX model can plausibly declare (ONNX 1.18 is opset 23). */
export const MAX_OPSET = 64;
/** Signs of mpc's own internals (JavaScript errors, unset values) in a message: never a user error. */
export const INTERNALS = /Cannot read propert|\bundefined\b|\bNaN\b|is not a function|is not iterable|of null|\bat .+:\d+:\d+|node:internal|(Type|Range|Reference|Syntax)Error|Maximum call stack|Invalid array length|\[object /;
/** How many problems the one-line report lists before '+N more'. */
const MAX_LISTED = 8;

export interface ValidateOptions {
  /** Byte limit of one tensor (default MAX_BUFFER_BYTES). */
  maxBufferBytes?: number;
}

type Long = { toNumber(): number; toString(): string } | number;
/** A protobuf int64 as a JavaScript number (exact below 2^53, else an approximation). */
const num = (v: Long | null | undefined): number => (v === null || v === undefined ? 0 : typeof v === 'number' ? v : Number(v.toString()));

/** Bytes per element on the device: i64 is carried as i32, bool as one byte per element. */
function deviceBytes(d: DType): number {
  return d === 'i64' ? 4 : byteSize(d);
}

/** Attribute names whose kind is fixed across every op that has them. */
const FLOAT_ATTRS = new Set(['alpha', 'beta', 'epsilon', 'momentum', 'gamma', 'lambd', 'bias', 'ratio', 'fmod_eps', 'value_float', 'spatial_scale', 'extrapolation_value', 'cubic_coeff_a', 'label_smoothing']);
const INT_ATTRS = new Set([
  'axis', 'transA', 'transB', 'keepdims', 'training_mode', 'group', 'ceil_mode', 'count_include_pad', 'storage_order', 'to', 'exclusive', 'reverse', 'largest', 'sorted',
  'select_last_index', 'noop_with_empty_axes', 'upper', 'hidden_size', 'layout', 'linear_before_reset', 'input_forget', 'blocksize', 'detect_negative', 'detect_positive',
  'fmod', 'size', 'k', 'saturate', 'allowzero', 'batch_dims', 'num_outputs', 'ignore_index', 'value_int', 'exclude_outside', 'p', 'stash_type', 'num_groups',
]);
const INTS_ATTRS = new Set(['perm', 'pads', 'strides', 'kernel_shape', 'dilations', 'output_padding', 'output_shape', 'value_ints']);
const STRING_ATTRS = new Set(['auto_pad', 'mode', 'direction', 'reduction', 'coordinate_transformation_mode', 'nearest_mode', 'equation', 'approximate', 'keep_aspect_ratio_policy']);

/** Attributes whose every element must be at least 1 (or at least 0 for pads). */
const POSITIVE_INTS = new Set(['strides', 'kernel_shape', 'dilations']);
const NON_NEGATIVE_INTS = new Set(['pads', 'output_padding']);

class Problems {
  readonly list: string[] = [];
  add(p: string): void {
    this.list.push(p);
  }
}

/** Joins problems into one line: the first few, then '+N more'. */
export function problemLine(problems: readonly string[], max = MAX_LISTED): string {
  // Names from a damaged file may hold line breaks or control characters: shown escaped, and long ones cut.
  const clean = (x: string) => {
    const e = x.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
    return e.length > 400 ? `${e.slice(0, 400)}...` : e;
  };
  const shown = problems.slice(0, max).map(clean).join('; ');
  return problems.length > max ? `${shown}; +${problems.length - max} more` : shown;
}

/** Why a dimension value is not acceptable, or undefined when it is. */
function badDim(d: number): string | undefined {
  if (typeof d !== 'number' || !Number.isFinite(d)) return 'a dimension could not be computed';
  if (!Number.isInteger(d)) return `dimension ${d} is not an integer`;
  if (d < 0) return `dimension ${d} is negative`;
  if (d > MAX_DIM) return `dimension ${d} exceeds ${MAX_DIM}`;
  return undefined;
}

/** Checks a list of static dimensions and the tensor's size; returns the element count, or undefined when invalid. */
function checkDims(p: Problems, what: string, dims: number[], dtype: DType | undefined, maxBytes: number, axes?: number[]): number | undefined {
  let ok = true;
  for (const [k, d] of dims.entries()) {
    const why = badDim(d);
    if (why) {
      p.add(`${what}: ${why} (axis ${axes ? axes[k] : k})`);
      ok = false;
    }
  }
  if (!ok) return undefined;
  const n = dims.reduce((a, b) => a * b, 1);
  const bytes = n * (dtype ? deviceBytes(dtype) : 4);
  if (bytes > maxBytes) {
    p.add(`${what}: shape [${dims.join(',')}] needs ${bytes} bytes, more than the ${maxBytes}-byte limit of one device buffer`);
    return undefined;
  }
  return n;
}

function dtypeOf(p: Problems, what: string, code: number | null | undefined): DType | undefined {
  try {
    return fromOnnx(code ?? 0);
  } catch (e) {
    p.add(`${what}: ${(e as Error).message}`);
    return undefined;
  }
}

/** A TensorProto (initializer or TENSOR attribute): type, dimensions and the amount of data. */
function checkTensor(p: Problems, what: string, t: O.ITensorProto, maxBytes: number): void {
  const dtype = dtypeOf(p, what, t.dataType);
  const dims = (t.dims ?? []).map(num);
  const n = checkDims(p, what, dims, dtype, maxBytes);
  if (!dtype || n === undefined) return;
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    const kv = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    if (!kv.get('location')) p.add(`${what}: external data without a location`);
    for (const key of ['offset', 'length'])
      if (kv.has(key)) {
        const s = kv.get(key)!;
        if (!/^\d+$/.test(s.trim())) p.add(`${what}: external data ${key} '${s}' is not a non-negative integer`);
      }
    return;
  }
  const need = n * byteSize(dtype);
  if (t.rawData && t.rawData.length) {
    if (t.rawData.length !== need) p.add(`${what}: has ${t.rawData.length} bytes of data, expected ${need} for ${dtype} [${dims.join(',')}]`);
    return;
  }
  const counts = [t.floatData?.length ?? 0, t.doubleData?.length ?? 0, t.int64Data?.length ?? 0, t.int32Data?.length ?? 0];
  const have = counts.find((c) => c > 0) ?? 0;
  if (counts.filter((c) => c > 0).length > 1) p.add(`${what}: data in more than one field`);
  else if (have !== n) p.add(`${what}: has ${have} values, expected ${n} for ${dtype} [${dims.join(',')}]`);
  if (t.stringData?.length) p.add(`${what}: string data is not supported`);
}

function checkAttribute(p: Problems, where: string, a: O.IAttributeProto, maxBytes: number): void {
  const T = onnx.AttributeProto.AttributeType;
  const name = a.name ?? '';
  const what = `${where}: attribute '${name}'`;
  if (!name) {
    p.add(`${where}: an attribute has no name`);
    return;
  }
  const kind = a.type ?? 0;
  const expect = FLOAT_ATTRS.has(name) ? [T.FLOAT, T.INT] : INT_ATTRS.has(name) ? [T.INT] : INTS_ATTRS.has(name) ? [T.INTS] : STRING_ATTRS.has(name) ? [T.STRING] : undefined;
  const kindName = T[kind] ?? String(kind);
  if (expect && !expect.includes(kind)) {
    p.add(`${what} must be ${T[expect[0]]}, the model gives ${kindName}`);
    return;
  }
  switch (kind) {
    case T.FLOAT:
      if (!Number.isFinite(a.f ?? 0)) p.add(`${what} is not a finite number`);
      break;
    case T.FLOATS:
      if ((a.floats ?? []).some((f) => !Number.isFinite(f))) p.add(`${what} holds a non-finite value`);
      break;
    case T.INT: {
      const v = num(a.i);
      if (!Number.isSafeInteger(v)) p.add(`${what} is ${String(a.i)}, out of range`);
      break;
    }
    case T.INTS: {
      const vs = (a.ints ?? []).map(num);
      if (vs.some((v) => !Number.isSafeInteger(v))) p.add(`${what} holds a value out of range`);
      else if (POSITIVE_INTS.has(name) && vs.some((v) => v < 1 || v > MAX_DIM)) p.add(`${what} [${vs.join(',')}] must hold positive sizes`);
      else if (name === 'perm' && !vs.every((v, k) => vs.indexOf(k) >= 0)) p.add(`${what} [${vs.join(',')}] is not a permutation of 0..${vs.length - 1}`);
      else if (NON_NEGATIVE_INTS.has(name) && vs.some((v) => v < 0 || v > MAX_DIM)) p.add(`${what} [${vs.join(',')}] must not be negative`);
      break;
    }
    case T.STRING:
    case T.STRINGS:
      break;
    case T.TENSOR:
      if (!a.t) p.add(`${what} is of type TENSOR but holds no tensor`);
      else checkTensor(p, what, a.t, maxBytes);
      break;
    default:
      p.add(`${what} has a type mpc does not read (${kindName})`);
  }
}

/**
 * Every problem of the model, each a short phrase naming its tensor or node (empty when the
 * model is well-formed). `opset` is the default-domain opset the importer found.
 */
export function validateModel(model: O.IModelProto, opts: ValidateOptions = {}): string[] {
  const maxBytes = opts.maxBufferBytes ?? MAX_BUFFER_BYTES;
  const p = new Problems();
  const irVersion = num(model.irVersion);
  if (irVersion > 100) p.add(`IR version ${irVersion} is not a real ONNX IR version`);
  const seenDomains = new Set<string>();
  for (const o of model.opsetImport ?? []) {
    const domain = o.domain || 'ai.onnx';
    const v = num(o.version);
    if (seenDomains.has(domain)) p.add(`opset of domain '${domain}' is declared twice`);
    seenDomains.add(domain);
    if (domain === 'ai.onnx' && (!Number.isInteger(v) || v < 1 || v > MAX_OPSET)) p.add(`opset version ${String(o.version)} of the default domain is not a real ONNX opset (1..${MAX_OPSET})`);
  }
  const g = model.graph;
  if (!g) return p.list;

  // Where each value is defined: 'input', 'initializer', or the index of its producing node.
  const defined = new Map<string, 'input' | 'initializer' | number>();
  const define = (name: string, by: 'input' | 'initializer' | number, what: string) => {
    const prev = defined.get(name);
    if (prev !== undefined) {
      if (by === 'input' && prev === 'initializer') return; // an initializer also listed as input (older exporters)
      const whom = (d: typeof prev) => (typeof d === 'number' ? `node '${nodeName(g.node![d], d)}'` : `the ${d}`);
      p.add(`value '${name}' is defined twice (by ${whom(prev)} and ${what})`);
      return;
    }
    defined.set(name, by);
  };

  for (const t of g.initializer ?? []) {
    const name = t.name ?? '';
    if (!name) {
      p.add('an initializer has no name');
      continue;
    }
    checkTensor(p, `initializer '${name}'`, t, maxBytes);
    define(name, 'initializer', `initializer '${name}'`);
  }
  if ((g.sparseInitializer ?? []).length) p.add('sparse initializers are not supported');

  for (const vi of g.input ?? []) {
    const name = vi.name ?? '';
    if (!name) {
      p.add('a graph input has no name');
      continue;
    }
    if (defined.get(name) === 'initializer') {
      define(name, 'input', `input '${name}'`);
      continue;
    }
    checkValueInfo(p, `input '${name}'`, vi, maxBytes);
    define(name, 'input', `the input '${name}'`);
  }

  const nodes = g.node ?? [];
  const outputsOf = nodes.map((n) => (n.output ?? []).filter(Boolean));
  for (const [i, n] of nodes.entries()) {
    const where = `node '${nodeName(n, i)}'`;
    if (!n.opType) p.add(`${where} has no op type`);
    const seen = new Set<string>();
    for (const a of n.attribute ?? []) {
      if (a.name && seen.has(a.name)) p.add(`${where}: attribute '${a.name}' is given twice`);
      seen.add(a.name ?? '');
      checkAttribute(p, `${where} (${n.opType})`, a, maxBytes);
    }
    if (!outputsOf[i].length) p.add(`${where} (${n.opType}) has no outputs`);
    for (const o of outputsOf[i]) define(o, i, where);
  }

  // Every input read is defined; by an earlier node (topological order), without cycles.
  let misordered: string | undefined;
  for (const [i, n] of nodes.entries()) {
    for (const input of n.input ?? []) {
      if (!input) continue;
      const by = defined.get(input);
      if (by === undefined) p.add(`node '${nodeName(n, i)}' (${n.opType}) reads '${input}', which nothing defines`);
      else if (typeof by === 'number' && by >= i && !misordered)
        misordered = `node '${nodeName(n, i)}' reads '${input}' before node '${nodeName(nodes[by], by)}' computes it`;
    }
  }
  if (misordered) {
    const cycle = findCycle(nodes, defined);
    p.add(cycle ? `the graph has a cycle (${cycle.map((k) => `'${nodeName(nodes[k], k)}'`).join(' -> ')})` : `the nodes are not in topological order: ${misordered}`);
  }

  const outNames = new Set<string>();
  for (const vi of g.output ?? []) {
    const name = vi.name ?? '';
    if (!name) p.add('a graph output has no name');
    else if (outNames.has(name)) p.add(`graph output '${name}' is listed twice`);
    else if (!defined.has(name)) p.add(`graph output '${name}' is not produced by any node`);
    outNames.add(name);
    if (name && vi.type?.tensorType?.shape) checkValueInfo(p, `output '${name}'`, vi, Infinity);
  }
  return p.list;
}

function nodeName(n: O.INodeProto, i: number): string {
  return n.name || `${n.opType || 'node'}_${i}`;
}

/** A graph input's or output's type: a tensor of a known element type with valid static dimensions. */
function checkValueInfo(p: Problems, what: string, vi: O.IValueInfoProto, maxBytes: number): void {
  const tt = vi.type?.tensorType;
  if (!tt) {
    p.add(`${what} is not a tensor`);
    return;
  }
  const dtype = dtypeOf(p, what, tt.elemType);
  const dims: number[] = [];
  const axes: number[] = [];
  for (const [k, d] of (tt.shape?.dim ?? []).entries()) {
    const which = (d as { value?: string }).value;
    // As the importer reads it: the `value` oneof says which field is set (a dim_value may be 0).
    if (which === 'dimValue' || (!which && !d.dimParam && num(d.dimValue) !== 0)) {
      dims.push(num(d.dimValue));
      axes.push(k);
    }
  }
  // Symbolic dimensions (the batch) count as 1 here; bound, they are checked after shape inference.
  checkDims(p, what, dims, dtype, maxBytes, axes);
}

/** A cycle among the nodes (indices, in order), or undefined when the graph is acyclic. */
function findCycle(nodes: O.INodeProto[], defined: Map<string, 'input' | 'initializer' | number>): number[] | undefined {
  const deps = nodes.map((n) => [...new Set((n.input ?? []).map((x) => defined.get(x)).filter((d): d is number => typeof d === 'number'))]);
  const state = new Uint8Array(nodes.length); // 0 new, 1 on the stack, 2 done
  for (let root = 0; root < nodes.length; root++) {
    if (state[root]) continue;
    // Iterative depth-first search: a stack of [node, next dependency index].
    const stack: [number, number][] = [[root, 0]];
    state[root] = 1;
    while (stack.length) {
      const top = stack[stack.length - 1];
      const [v, k] = top;
      if (k < deps[v].length) {
        top[1]++;
        const w = deps[v][k];
        if (state[w] === 1) {
          const at = stack.findIndex(([x]) => x === w);
          return stack.slice(at).map(([x]) => x).reverse();
        }
        if (!state[w]) {
          state[w] = 1;
          stack.push([w, 0]);
        }
      } else {
        state[v] = 2;
        stack.pop();
      }
    }
  }
  return undefined;
}

/**
 * After shape inference: every value's shape is made of integer dimensions in range and fits
 * a device buffer. Returns the problems, naming the node that produced each bad shape.
 */
export function checkShapes(g: Graph, opts: ValidateOptions = {}): string[] {
  const maxBytes = opts.maxBufferBytes ?? MAX_BUFFER_BYTES;
  const p = new Problems();
  const producer = new Map<string, string>();
  for (const n of g.nodes) for (const o of n.outputs) if (o) producer.set(o, `${n.op} '${n.name}'`);
  for (const v of g.values.values()) {
    const what = producer.has(v.name) ? `${producer.get(v.name)}: output '${v.name}'` : `'${v.name}'`;
    if (!Array.isArray(v.shape)) {
      p.add(`${what} has no shape`);
      continue;
    }
    const dims = v.shape.filter((d): d is number => typeof d === 'number');
    if (dims.length !== v.shape.length) continue; // symbolic dims are bind-dims' business
    let dtype: DType | undefined;
    try {
      dtype = deviceBytes(v.dtype) > 0 ? v.dtype : undefined;
    } catch {
      dtype = undefined;
    }
    const n = checkDims(p, what, dims, dtype, maxBytes);
    // An empty data tensor (a zero dimension) computed by the model or fed to it: mpc's kernels need elements.
    if (n === 0 && (v.role === 'input' || (v.role === 'activation' && producer.has(v.name) && isFloat(v.dtype))))
      p.add(`${what} has no elements (shape [${dims.join(',')}]); mpc needs non-empty tensors`);
  }
  return p.list;
}
