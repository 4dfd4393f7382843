// A seeded, structure-aware mutation fuzzer of the importer and compiler. Each case takes one
// bundled model (models/*.onnx), decodes it, applies one or two mutations to the message
// (dimensions 0/negative/2^31/2^53, data types, raw_data lengths, deleted, duplicated or
// reordered nodes, cycles, attribute kinds and values, opsets, renamed inputs and outputs,
// external data pointing at folders, FIFOs, devices, symlinks, paths out of the folder, past
// the end of a file) or flips and cuts the encoded bytes, and runs the result through
// compileModel. A case passes when it compiles or fails with a clean user error: an
// InputError whose message carries no JavaScript internals. Anything else is a finding.
//
//   npm run fuzz -- --cases N --seed S [--timeout SECONDS] [--models a,b] [--show K]
//
// prints the count of each outcome class (ok, user error, internal error, crash, timeout) and
// the first findings with the case number that replays them (`--case K`). Every case runs in
// a child process (`--child`), so that a crash or a hang is observed, not suffered: the parent
// kills a case that runs past the time bound and carries on with the next one.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import onnxProto from 'onnx-proto';
import type { onnx as O } from 'onnx-proto';
import { compileModel } from '../compile/compile.js';
import { InputError } from '../onnx/import.js';

const onnx = onnxProto.onnx;
const T = onnx.AttributeProto.AttributeType;

export type Outcome = 'ok' | 'user error' | 'internal error' | 'crash' | 'timeout';
export const OUTCOMES: Outcome[] = ['ok', 'user error', 'internal error', 'crash', 'timeout'];

export { INTERNALS } from '../onnx/validate.js';
import { INTERNALS } from '../onnx/validate.js';

/** Deterministic 32-bit generator (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const pick = <X>(r: Rand, xs: readonly X[]): X => xs[Math.floor(r() * xs.length)];
const int = (r: Rand, n: number): number => Math.floor(r() * n);

/** Dimensions that break things: empty, negative, past int32, past exact doubles. */
const BAD_DIMS = [0, -1, -7, 2 ** 31, 2 ** 31 - 1, 2 ** 32 + 3, 2 ** 53 - 1, 2 ** 40, 1, 3, 100_000];
const BAD_FLOATS = [NaN, Infinity, -Infinity, 1e38, -1, 0, 3.5e-45, 1e10];
const BAD_INTS = [-1, 0, -(2 ** 31), 2 ** 31, 2 ** 53 - 1, 7, 1, 99];

/** The scratch folder: the model's folder with special files next to it, and a file outside. */
export interface Scratch {
  root: string;
  /** The folder each case's model is written into. */
  dir: string;
  /** A regular data file inside `dir` (random bytes) and its size. */
  data: string;
  dataSize: number;
}

/**
 * Makes the scratch folder: `root/m/` holds `data.bin`, a folder `sub/`, a FIFO `pipe` (when
 * mkfifo exists), symlinks to /dev/zero, to a file outside, to a folder and to itself.
 */
export function makeScratch(parent = tmpdir()): Scratch {
  const root = mkdtempSync(join(parent, 'mpc-fuzz-'));
  const dir = join(root, 'm');
  mkdirSync(join(dir, 'sub'), { recursive: true });
  const dataSize = 1 << 20;
  const bytes = new Uint8Array(dataSize);
  const r = rng(12345);
  // Small finite floats, so that external weights read from it are ordinary numbers.
  const f = new Float32Array(bytes.buffer);
  for (let i = 0; i < f.length; i++) f[i] = r() - 0.5;
  writeFileSync(join(dir, 'data.bin'), bytes);
  writeFileSync(join(root, 'outside.bin'), bytes.subarray(0, 4096));
  spawnSync('mkfifo', [join(dir, 'pipe')]);
  symlinkSync('/dev/zero', join(dir, 'zero'));
  symlinkSync('../outside.bin', join(dir, 'out.bin'));
  symlinkSync('sub', join(dir, 'subdir-link'));
  symlinkSync('loop', join(dir, 'loop'));
  return { root, dir, data: 'data.bin', dataSize };
}

export interface FuzzCase {
  index: number;
  model: string;
  mutations: string[];
  bytes: Uint8Array;
}

const cache = new Map<string, Uint8Array>();
function modelBytes(path: string): Uint8Array {
  let b = cache.get(path);
  if (!b) cache.set(path, (b = new Uint8Array(readFileSync(path)))); // a copy: Buffer.slice would share memory
  return b;
}

const num = (v: unknown): number => (typeof v === 'number' ? v : v && typeof v === 'object' && 'toNumber' in v ? (v as { toNumber(): number }).toNumber() : 0);

type Mutation = (m: O.ModelProto, r: Rand, s: Scratch) => string | undefined;

function graphOf(m: O.ModelProto): O.GraphProto {
  return m.graph as O.GraphProto;
}

/** Graph inputs that are not initializers. */
function dataInputs(g: O.GraphProto): O.IValueInfoProto[] {
  const inits = new Set(g.initializer.map((t) => t.name));
  return g.input.filter((i) => !inits.has(i.name));
}

function allAttrs(g: O.GraphProto): { node: O.INodeProto; attr: O.IAttributeProto }[] {
  return g.node.flatMap((node) => (node.attribute ?? []).map((attr) => ({ node, attr })));
}

/** Mutations of the message, each returning a description (or undefined when it did not apply). */
const MUTATIONS: [weight: number, name: string, fn: Mutation][] = [
  [6, 'input-dim', (m, r) => {
    const ins = dataInputs(graphOf(m));
    const dims = ins.flatMap((i) => i.type?.tensorType?.shape?.dim ?? []);
    if (!dims.length) return undefined;
    const d = pick(r, dims);
    const v = pick(r, BAD_DIMS);
    delete (d as { dimParam?: string }).dimParam;
    d.dimValue = v;
    return `input dim := ${v}`;
  }],
  [6, 'init-dim', (m, r) => {
    const g = graphOf(m);
    const t = pick(r, g.initializer);
    if (!t?.dims?.length) return undefined;
    const k = int(r, t.dims.length);
    const v = pick(r, BAD_DIMS);
    t.dims[k] = v;
    return `initializer '${t.name}' dim ${k} := ${v}`;
  }],
  [3, 'zero-size-init', (m, r) => {
    // A consistent zero-sized tensor (dims and data agree): passes validation, tests the passes.
    const t = pick(r, graphOf(m).initializer);
    if (!t?.dims?.length) return undefined;
    t.dims[int(r, t.dims.length)] = 0;
    t.rawData = new Uint8Array(0);
    t.floatData = [];
    t.int64Data = [];
    t.int32Data = [];
    return `initializer '${t.name}' zero-sized`;
  }],
  [4, 'dtype', (m, r) => {
    const g = graphOf(m);
    const v = pick(r, [0, 2, 3, 5, 8, 10, 11, 12, 13, 14, 16, 17, 19, 23, 99, -1, 7, 6, 9, 1]);
    if (r() < 0.5 && g.initializer.length) {
      const t = pick(r, g.initializer);
      t.dataType = v;
      return `initializer '${t.name}' dtype := ${v}`;
    }
    const vi = pick(r, [...dataInputs(g), ...g.output]);
    if (!vi?.type?.tensorType) return undefined;
    vi.type.tensorType.elemType = v;
    return `'${vi.name}' elem type := ${v}`;
  }],
  [4, 'raw-length', (m, r) => {
    const t = pick(r, graphOf(m).initializer.filter((x) => x.rawData?.length));
    if (!t?.rawData) return undefined;
    const n = t.rawData.length;
    const len = pick(r, [0, 1, n - 1, n + 1, n + 4, Math.floor(n / 2), n * 2]);
    const out = new Uint8Array(Math.max(0, len));
    out.set(t.rawData.subarray(0, Math.min(n, out.length)));
    t.rawData = out;
    return `initializer '${t.name}' raw_data ${n} -> ${out.length} bytes`;
  }],
  [3, 'typed-data', (m, r) => {
    const t = pick(r, graphOf(m).initializer);
    if (!t) return undefined;
    t.rawData = new Uint8Array(0);
    const n = int(r, 5);
    if (r() < 0.5) t.floatData = Array.from({ length: n }, () => pick(r, BAD_FLOATS));
    else t.int64Data = Array.from({ length: n }, () => pick(r, BAD_INTS));
    return `initializer '${t.name}' typed data of ${n} values`;
  }],
  [4, 'delete-node', (m, r) => {
    const g = graphOf(m);
    if (g.node.length < 2) return undefined;
    const k = int(r, g.node.length);
    const [n] = g.node.splice(k, 1);
    return `node '${n.name}' deleted`;
  }],
  [3, 'duplicate-node', (m, r) => {
    const g = graphOf(m);
    const k = int(r, g.node.length);
    const copy = onnx.NodeProto.decode(onnx.NodeProto.encode(g.node[k]).finish());
    if (r() < 0.5) copy.name = `${copy.name}_dup`;
    g.node.splice(k + 1 + int(r, 3), 0, copy);
    return `node '${g.node[k].name}' duplicated`;
  }],
  [4, 'cycle', (m, r) => {
    const g = graphOf(m);
    if (g.node.length < 2) return undefined;
    const i = int(r, g.node.length - 1);
    const j = i + 1 + int(r, g.node.length - i - 1);
    const src = g.node[j].output?.[0];
    const dst = g.node[i];
    if (!src || !dst.input?.length) return undefined;
    dst.input[int(r, dst.input.length)] = src;
    return `node '${dst.name}' reads '${src}' of a later node`;
  }],
  [3, 'reorder', (m, r) => {
    const g = graphOf(m);
    if (g.node.length < 2) return undefined;
    const i = int(r, g.node.length);
    const j = int(r, g.node.length);
    [g.node[i], g.node[j]] = [g.node[j], g.node[i]];
    return `nodes ${i} and ${j} swapped`;
  }],
  [5, 'attr-kind', (m, r) => {
    const a = pick(r, allAttrs(graphOf(m)));
    if (!a) return undefined;
    const to = pick(r, [T.FLOAT, T.INT, T.STRING, T.TENSOR, T.GRAPH, T.FLOATS, T.INTS, T.STRINGS, T.UNDEFINED, 77]);
    a.attr.type = to;
    if (to === T.TENSOR && r() < 0.7) a.attr.t = null;
    return `attribute '${a.node.name}.${a.attr.name}' kind := ${to}`;
  }],
  [6, 'attr-value', (m, r) => {
    const a = pick(r, allAttrs(graphOf(m)));
    if (!a) return undefined;
    const at = a.attr;
    switch (at.type) {
      case T.FLOAT:
        at.f = pick(r, BAD_FLOATS);
        return `attribute '${a.node.name}.${at.name}' := ${at.f}`;
      case T.INT:
        at.i = pick(r, BAD_INTS);
        return `attribute '${a.node.name}.${at.name}' := ${at.i}`;
      case T.INTS:
        if (r() < 0.3) at.ints = [];
        else at.ints = (at.ints ?? [0]).map((x) => (r() < 0.5 ? pick(r, BAD_INTS) : x));
        return `attribute '${a.node.name}.${at.name}' := [${at.ints.map(num)}]`;
      case T.FLOATS:
        at.floats = (at.floats ?? [0]).map((x) => (r() < 0.5 ? pick(r, BAD_FLOATS) : x));
        return `attribute '${a.node.name}.${at.name}' floats changed`;
      case T.STRING:
        at.s = new TextEncoder().encode(pick(r, ['', 'BOGUS', 'SAME_UPPER', 'reflect', 'edge', 'constant', 'tanh', 'wrap']));
        return `attribute '${a.node.name}.${at.name}' := '${new TextDecoder().decode(at.s)}'`;
      case T.TENSOR:
        at.t = null;
        return `attribute '${a.node.name}.${at.name}' tensor removed`;
      default:
        return undefined;
    }
  }],
  [2, 'attr-delete', (m, r) => {
    const n = pick(r, graphOf(m).node.filter((x) => x.attribute?.length));
    if (!n) return undefined;
    const [a] = n.attribute!.splice(int(r, n.attribute!.length), 1);
    return `attribute '${n.name}.${a.name}' deleted`;
  }],
  [3, 'const-values', (m, r) => {
    // Integer constants (Reshape shapes, axes, slice bounds) given odd values.
    const g = graphOf(m);
    const ints = g.initializer.filter((t) => t.dataType === 7 || t.dataType === 6);
    const consts = allAttrs(g).filter((a) => a.attr.t && (a.attr.t.dataType === 7 || a.attr.t.dataType === 6)).map((a) => a.attr.t!);
    const t = pick(r, [...ints, ...consts]);
    if (!t) return undefined;
    const n = (t.dims ?? []).map(num).reduce((x, y) => x * y, 1);
    const vals = Array.from({ length: n }, () => pick(r, [-1, 0, 1, 2, 3, -2, 5, 64, 2 ** 31 - 1, -(2 ** 31), 1000]));
    const raw = new Uint8Array(n * (t.dataType === 7 ? 8 : 4));
    const dv = new DataView(raw.buffer);
    vals.forEach((v, i) => (t.dataType === 7 ? dv.setBigInt64(8 * i, BigInt(v), true) : dv.setInt32(4 * i, v, true)));
    t.rawData = raw;
    t.int64Data = [];
    t.int32Data = [];
    return `integer constant '${t.name}' := [${vals}]`;
  }],
  [3, 'opset', (m, r) => {
    const o = (m.opsetImport ?? []).find((x) => !x.domain || x.domain === 'ai.onnx');
    if (!o) return undefined;
    o.version = pick(r, [0, -1, 1, 6, 7, 12, 99, 100_000, 2 ** 40, 2 ** 53 - 1]);
    return `opset := ${o.version}`;
  }],
  [1, 'ir-version', (m, r) => {
    m.irVersion = pick(r, [0, -3, 1, 999, 2 ** 40]);
    return `ir_version := ${m.irVersion}`;
  }],
  [3, 'rename-input', (m, r) => {
    const g = graphOf(m);
    const vi = pick(r, r() < 0.7 ? dataInputs(g) : g.output);
    if (!vi) return undefined;
    const old = vi.name;
    vi.name = pick(r, ['', `${old}_renamed`, g.node[0]?.output?.[0] ?? 'x', g.initializer[0]?.name ?? 'w']);
    return `'${old}' renamed '${vi.name}'`;
  }],
  [2, 'op-type', (m, r) => {
    const n = pick(r, graphOf(m).node);
    if (!n) return undefined;
    const old = n.opType;
    n.opType = pick(r, ['Gemm', 'Relu', 'Add', 'MatMul', 'Reshape', 'Softmax', 'Gather', 'Transpose', 'Conv', 'Pad', 'Concat', 'Slice', 'Split', 'ReduceMean', 'LayerNormalization', 'Flatten', 'Identity', '']);
    return `node '${n.name}' ${old} -> ${n.opType}`;
  }],
  [2, 'drop-input', (m, r) => {
    const n = pick(r, graphOf(m).node.filter((x) => (x.input?.length ?? 0) > 0));
    if (!n) return undefined;
    if (r() < 0.5) n.input!.pop();
    else n.input!.push(pick(r, ['', n.input![0]]));
    return `node '${n.name}' inputs := [${n.input}]`;
  }],
  [2, 'drop-initializer', (m, r) => {
    const g = graphOf(m);
    if (!g.initializer.length) return undefined;
    const [t] = g.initializer.splice(int(r, g.initializer.length), 1);
    return `initializer '${t.name}' removed`;
  }],
  [5, 'external', (m, r, s) => {
    const g = graphOf(m);
    const t = pick(r, g.initializer.filter((x) => (x.dims ?? []).length));
    if (!t) return undefined;
    const need = (t.dims ?? []).map(num).reduce((x, y) => x * y, 1) * 4;
    t.dataType = 1;
    t.rawData = new Uint8Array(0);
    t.floatData = [];
    t.int64Data = [];
    t.int32Data = [];
    t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    const kv = (entries: [string, string][]) => entries.map(([key, value]) => onnx.StringStringEntryProto.create({ key, value }));
    const where = pick(r, ['sub', 'pipe', 'zero', 'out.bin', 'subdir-link', 'loop', '../outside.bin', `${s.root}/outside.bin`, '/dev/zero', '/dev/null', 'missing.bin', 'sub/../data.bin', 'data.bin', 'data.bin', 'data.bin/x', '']);
    const offset = pick(r, ['0', '0', '-4', String(s.dataSize), String(s.dataSize + 8), String(s.dataSize - need), 'abc', '4', '1e3', '9007199254740993']);
    const length = pick(r, [undefined, String(need), String(need), String(s.dataSize * 2), '-1', '0']);
    t.externalData = kv([['location', where], ['offset', offset], ...(length === undefined ? [] : ([['length', length]] as [string, string][]))]);
    return `initializer '${t.name}' external '${where}' offset ${offset} length ${length}`;
  }],
];

const BYTE_MUTATIONS: [number, string, (b: Uint8Array, r: Rand) => Uint8Array][] = [
  [3, 'byte-flip', (b, r) => {
    const out = b.slice();
    const n = 1 + int(r, 8);
    for (let k = 0; k < n; k++) out[int(r, out.length)] ^= 1 << int(r, 8);
    return out;
  }],
  [2, 'truncate', (b, r) => b.slice(0, int(r, b.length))],
  [1, 'byte-splice', (b, r) => {
    const i = int(r, b.length);
    const j = int(r, b.length);
    const len = 1 + int(r, 64);
    const out = b.slice();
    out.set(b.subarray(j, Math.min(b.length, j + len)), i);
    return out;
  }],
];

function weighted<X extends [number, ...unknown[]]>(r: Rand, xs: readonly X[]): X {
  const total = xs.reduce((a, x) => a + x[0], 0);
  let v = r() * total;
  for (const x of xs) if ((v -= x[0]) < 0) return x;
  return xs[xs.length - 1];
}

/** The bundled models (models/*.onnx). */
export function bundledModels(root: string): string[] {
  const dir = join(root, 'models');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.onnx'))
    .sort()
    .map((f) => join(dir, f));
}

/** Case `index` of the corpus with `seed`: the same pair always gives the same bytes. */
export function makeCase(seed: number, index: number, models: readonly string[], s: Scratch): FuzzCase {
  const r = rng((seed * 0x9e3779b1) ^ (index * 0x85ebca6b) ^ 0x5bd1e995);
  const model = pick(r, models);
  const base = modelBytes(model);
  const mutations: string[] = [];
  if (r() < 0.15) {
    const [, name, fn] = weighted(r, BYTE_MUTATIONS);
    mutations.push(name);
    return { index, model, mutations, bytes: fn(base, r) };
  }
  const m = onnx.ModelProto.decode(base);
  const count = r() < 0.75 ? 1 : 2;
  for (let tries = 0; mutations.length < count && tries < 10; tries++) {
    const [, , fn] = weighted(r, MUTATIONS);
    const d = fn(m, r, s);
    if (d) mutations.push(d);
  }
  let bytes = onnx.ModelProto.encode(m).finish();
  if (r() < 0.05) {
    const [, name, fn] = weighted(r, BYTE_MUTATIONS);
    mutations.push(name);
    bytes = fn(bytes, r);
  }
  return { index, model, mutations, bytes };
}

export interface CaseResult {
  index: number;
  outcome: Outcome;
  message: string;
  ms: number;
}

/** The outcome of an error thrown by compileModel. */
export function classify(e: unknown): { outcome: Outcome; message: string } {
  const err = e instanceof Error ? e : new Error(String(e));
  const message = `${err.name}: ${err.message.split('\n')[0]}`;
  if (!(err instanceof InputError)) return { outcome: 'internal error', message };
  if (err.message.includes('\n') || INTERNALS.test(err.message)) return { outcome: 'internal error', message: `user error with internals: ${message}` };
  return { outcome: 'user error', message };
}

/** Writes the case into the scratch folder and compiles it in this process. */
export function runCase(c: FuzzCase, s: Scratch, batch = 2): CaseResult {
  const path = join(s.dir, 'case.onnx');
  writeFileSync(path, c.bytes);
  const t0 = performance.now();
  let res: { outcome: Outcome; message: string };
  try {
    compileModel(path, { policy: 'fp32', batch });
    res = { outcome: 'ok', message: '' };
  } catch (e) {
    res = classify(e);
  }
  return { index: c.index, ...res, ms: performance.now() - t0 };
}

/** Names in the scratch folder that makeScratch did not make (and case.onnx). */
export function strayFiles(s: Scratch): string[] {
  const known = new Set(['sub', 'data.bin', 'pipe', 'zero', 'out.bin', 'subdir-link', 'loop', 'case.onnx']);
  const extra = readdirSync(s.dir).filter((f) => !known.has(f));
  const top = readdirSync(s.root).filter((f) => f !== 'm' && f !== 'outside.bin');
  const sub = readdirSync(join(s.dir, 'sub'));
  return [...extra, ...top.map((f) => `../${f}`), ...sub.map((f) => `sub/${f}`)];
}

// ---------------------------------------------------------------------------------------
// The long-run driver.

interface DriverOpts {
  cases: number;
  seed: number;
  timeoutS: number;
  models?: string[];
  show: number;
  only?: number;
}

function parseArgs(argv: string[]): DriverOpts & { child: boolean; start: number; end: number; scratch?: string } {
  const o = { cases: 1000, seed: 1, timeoutS: 20, show: 20, child: false, start: 0, end: 0 } as DriverOpts & { child: boolean; start: number; end: number; scratch?: string };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i] ?? '';
    const n = (s: string, what: string) => {
      const x = Number(s);
      if (!Number.isInteger(x) || x < 0) throw new InputError(`${what} must be a non-negative integer, got '${s}'`);
      return x;
    };
    if (a === '--cases') o.cases = n(v(), '--cases');
    else if (a === '--seed') o.seed = n(v(), '--seed');
    else if (a === '--timeout') o.timeoutS = n(v(), '--timeout');
    else if (a === '--show') o.show = n(v(), '--show');
    else if (a === '--case') o.only = n(v(), '--case');
    else if (a === '--models') o.models = v().split(',');
    else if (a === '--child') o.child = true;
    else if (a === '--start') o.start = n(v(), '--start');
    else if (a === '--end') o.end = n(v(), '--end');
    else if (a === '--scratch') o.scratch = v();
    else throw new InputError(`unknown option '${a}' (options: --cases N --seed S --timeout SECONDS --models a,b --show K --case K)`);
  }
  return o;
}

const ROOT = (() => {
  const here = dirname(fileURLToPath(import.meta.url));
  const up = resolve(here, '..', '..');
  return basename(up) === 'dist' ? dirname(up) : up;
})();

function modelList(names?: string[]): string[] {
  const all = bundledModels(ROOT);
  if (!names) return all;
  return names.map((n) => {
    const hit = all.find((p) => basename(p) === n || basename(p) === `${n}.onnx`);
    if (!hit) throw new InputError(`--models: no bundled model '${n}' (models: ${all.map((p) => basename(p)).join(', ')})`);
    return hit;
  });
}

/** Child: runs cases [start, end) and writes one JSON line per case, a 'start' line before each. */
function child(o: ReturnType<typeof parseArgs>): void {
  const s: Scratch = { root: dirname(o.scratch!), dir: o.scratch!, data: 'data.bin', dataSize: 1 << 20 };
  const models = modelList(o.models);
  for (let i = o.start; i < o.end; i++) {
    process.stdout.write(`${JSON.stringify({ start: i })}\n`);
    const c = makeCase(o.seed, i, models, s);
    const res = runCase(c, s);
    const stray = strayFiles(s);
    if (stray.length) {
      res.outcome = 'internal error';
      res.message = `stray files: ${stray.join(', ')}`;
    }
    process.stdout.write(`${JSON.stringify({ ...res, model: basename(c.model), mutations: c.mutations })}\n`);
  }
}

async function driver(o: ReturnType<typeof parseArgs>): Promise<number> {
  const models = modelList(o.models);
  const s = makeScratch();
  const counts = Object.fromEntries(OUTCOMES.map((k) => [k, 0])) as Record<Outcome, number>;
  const findings: string[] = [];
  const first = o.only ?? 0;
  const end = o.only !== undefined ? o.only + 1 : o.cases;
  const t0 = Date.now();
  let next = first;
  const record = (index: number, outcome: Outcome, message: string, what: string) => {
    counts[outcome]++;
    if (outcome !== 'ok' && outcome !== 'user error') findings.push(`case ${index} [${what}]: ${outcome}: ${message}`);
    if (o.only !== undefined) console.log(`case ${index} [${what}]: ${outcome}${message ? `: ${message}` : ''}`);
  };
  try {
    while (next < end) {
      // One child process runs cases from `next` until it finishes, crashes or runs past the bound.
      await new Promise<void>((done) => {
        const args = [fileURLToPath(import.meta.url), '--child', '--seed', String(o.seed), '--start', String(next), '--end', String(end), '--scratch', s.dir];
        if (o.models) args.push('--models', o.models.join(','));
        const p = spawn(process.execPath, ['--max-old-space-size=4096', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
        let current = -1;
        let buf = '';
        let stderr = '';
        let timer: NodeJS.Timeout | undefined;
        const arm = () => {
          clearTimeout(timer);
          timer = setTimeout(() => {
            record(current, 'timeout', `no result after ${o.timeoutS} s`, describe(current));
            next = current + 1;
            current = -2;
            p.kill('SIGKILL');
          }, o.timeoutS * 1000);
        };
        const describe = (i: number) => {
          const c = makeCase(o.seed, i, models, s);
          return `${basename(c.model)}: ${c.mutations.join(', ')}`;
        };
        p.stdout.on('data', (d: Buffer) => {
          buf += d.toString();
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            const msg = JSON.parse(line) as { start?: number } & Partial<CaseResult> & { model?: string; mutations?: string[] };
            if (msg.start !== undefined) {
              current = msg.start;
              stderr = '';
              arm();
            } else {
              record(msg.index!, msg.outcome!, msg.message!, `${msg.model}: ${msg.mutations!.join(', ')}`);
              next = msg.index! + 1;
              if (next % 500 === 0) process.stderr.write(`  ${next - first} cases, ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
            }
          }
        });
        p.stderr.on('data', (d: Buffer) => (stderr += d.toString()).length > 100_000 && (stderr = stderr.slice(-10_000)));
        p.on('close', (code, signal) => {
          clearTimeout(timer);
          if (current >= 0 && next <= current) {
            const tail = stderr.trim().split('\n').filter(Boolean).slice(0, 2).join(' | ');
            record(current, 'crash', `exit ${code ?? signal}: ${tail.slice(0, 300)}`, describe(current));
            next = current + 1;
          }
          done();
        });
      });
    }
  } finally {
    rmSync(s.root, { recursive: true, force: true });
  }
  const secs = (Date.now() - t0) / 1000;
  console.log(`fuzz: ${end - first} cases, seed ${o.seed}, models ${models.map((p) => basename(p)).join(', ')}, ${secs.toFixed(0)} s`);
  for (const k of OUTCOMES) console.log(`  ${k.padEnd(15)} ${counts[k]}`);
  if (findings.length) {
    console.log(`findings (first ${Math.min(o.show, findings.length)} of ${findings.length}; replay one with --case K):`);
    for (const f of findings.slice(0, o.show)) console.log(`  ${f}`);
  }
  return findings.length ? 1 : 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const o = parseArgs(process.argv.slice(2));
    if (o.child) child(o);
    else process.exitCode = await driver(o);
  } catch (e) {
    process.stderr.write(`fuzz: ${(e as Error).message}\n`);
    process.exitCode = e instanceof InputError ? 2 : 1;
  }
}
