// The ONNX backend node tests (Debian package libonnx-testdata) as a conformance suite that
// nobody here wrote: every case is a small model.onnx with recorded inputs and expected
// outputs (test_data_set_0/input_*.pb, output_*.pb, TensorProto files).
//
// For each case this library decides, in this order:
//   1. skipped: the model uses ops the op table lacks (or has at a different opset): listed;
//   2. skipped: an input/output/initializer has a type mpc does not carry (strings, uint8,
//      double, sequences...) or an int64 value outside the i32 range mpc carries i64 in;
//   3. otherwise it runs: import, bind the symbolic dims to the recorded input shapes, the
//      EVAL pipeline in fp32, then the CPU interpreter and WebGPU, each compared with the
//      expected outputs at the suite's tolerances (rtol 1e-3, atol 1e-7; integers and bools
//      exactly). An error in import or compile here is a failure, never a skip: every op is
//      in the table, so it is a bug (in the importer, a pass, or an op row).
// mpc compiles static shapes, so an op may need an operand as a constant (Reshape's shape,
// Slice's starts/ends...); the suite feeds those as graph inputs, where real models have
// initializers. When a case does not compile as it is, it is compiled again with every
// recorded input frozen into a constant; the result notes it (`frozen`), and if that fails
// too the first error is the one reported.
// Old versions of the suite store bf16 data as UINT16 bit patterns: read as bf16 when the
// model declares BFLOAT16.
// The GPU results of a failing case are also compared node by node with the interpreter's
// values, to name the first node whose kernel disagrees with the oracle.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import type { onnx as O } from 'onnx-proto';
import { generate } from '../codegen/program.js';
import { passCtx } from '../compile/options.js';
import { runGraph } from '../interp/interpreter.js';
import { fromOnnx, isFloat } from '../ir/dtypes.js';
import { staticShape, type Graph } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { importOnnx, tensorFromProto } from '../onnx/import.js';
import { hasOp, opRow } from '../ops/table.js';
import { EVAL_PIPELINE, runPipeline } from '../passes/pipeline.js';
import type { Gpu } from '../runtime/device.js';
import { GpuProgram } from '../runtime/gpu-program.js';

const onnx = onnxProto.onnx;

export const NODE_TESTS_DIR = '/usr/share/libonnx-testdata/data/node';

/** The suite's tolerances (onnx/backend/test/runner: assert_allclose(rtol=1e-3, atol=1e-7)). */
export const RTOL = 1e-3;
export const ATOL = 1e-7;

export type Backend = 'interp' | 'webgpu';
export const BACKENDS: readonly Backend[] = ['interp', 'webgpu'];

export type Outcome = { status: 'pass' } | { status: 'fail'; reason: string } | { status: 'skip'; reason: string };

/** What can be known about a case without running it. */
export interface CaseInfo {
  name: string;
  dir: string;
  opset: number;
  /** Distinct op types of the model's nodes (prefixed with their domain when not ai.onnx). */
  ops: string[];
  /** Ops (as in `ops`) that the table lacks, or has for other opsets (then with a note). */
  unsupported: { op: string; note?: string }[];
  /** Why the case cannot run on mpc for its data types (or its data is inconsistent), if it cannot. */
  dtypeSkip?: string;
}

export interface CaseResult {
  info: CaseInfo;
  interp: Outcome;
  webgpu: Outcome;
  /** Set when the case compiled only with its recorded inputs frozen into constants: why. */
  frozen?: string;
  ms: number;
}

const num = (v: { toNumber(): number } | number | null | undefined): number =>
  v === null || v === undefined ? 0 : typeof v === 'number' ? v : v.toNumber();

const TYPE_NAMES = Object.fromEntries(Object.entries(onnx.TensorProto.DataType).map(([k, v]) => [v, k])) as Record<number, string>;

/** The case folders of the suite, sorted by name. */
export function listCases(root = NODE_TESTS_DIR): string[] {
  if (!existsSync(root)) throw new Error(`ONNX node tests not found at ${root}: install the Debian package libonnx-testdata`);
  return readdirSync(root, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(root, d.name, 'model.onnx')))
    .map((d) => d.name)
    .sort();
}

function readModel(dir: string): O.ModelProto {
  return onnx.ModelProto.decode(readFileSync(join(dir, 'model.onnx')));
}

/** The graph inputs fed at run time: those that are not initializers, in order. */
function runtimeInputs(g: O.IGraphProto): O.IValueInfoProto[] {
  const inits = new Set((g.initializer ?? []).map((t) => t.name));
  return (g.input ?? []).filter((vi) => !inits.has(vi.name));
}

function dataFiles(dir: string, kind: 'input' | 'output'): string[] {
  const set = join(dir, 'test_data_set_0');
  if (!existsSync(set)) return [];
  return readdirSync(set)
    .filter((f) => new RegExp(`^${kind}_\\d+\\.pb$`).test(f))
    .sort((a, b) => Number(a.match(/\d+/)![0]) - Number(b.match(/\d+/)![0]))
    .map((f) => join(set, f));
}

/** Whether the op table runs `type` from the default domain at `opset`, and why not. */
function support(type: string, domain: string, opset: number): { ok: true } | { ok: false; op: string; note?: string } {
  const domainOk = !domain || domain === 'ai.onnx';
  const op = domainOk ? type : `${domain}.${type}`;
  if (!domainOk || !hasOp(type)) return { ok: false, op };
  const row = opRow(type);
  if (row.domain !== '') return { ok: false, op };
  if (row.opsets && (opset < row.opsets[0] || opset > row.opsets[1]))
    return { ok: false, op, note: `opset ${opset}, row covers ${row.opsets[0]}-${row.opsets[1]}` };
  return { ok: true };
}

/** Why a tensor of ONNX elem type `t` cannot be carried, or undefined when it can. */
function dtypeProblem(t: number | null | undefined, what: string): string | undefined {
  try {
    fromOnnx(t ?? 0);
    return undefined;
  } catch {
    return `${what} is ${TYPE_NAMES[t ?? 0] ?? `type ${t}`}`;
  }
}

/** Whether an INT64 TensorProto holds a value outside the i32 range (mpc carries i64 as i32). */
function int64OutOfRange(t: O.ITensorProto): boolean {
  if (t.dataType !== onnx.TensorProto.DataType.INT64) return false;
  const out = (v: bigint | number) => v > 2147483647 || v < -2147483648;
  if (t.rawData && t.rawData.length) {
    const dv = new DataView(t.rawData.buffer, t.rawData.byteOffset, t.rawData.byteLength);
    for (let i = 0; i + 8 <= t.rawData.length; i += 8) if (out(dv.getBigInt64(i, true))) return true;
    return false;
  }
  return (t.int64Data ?? []).some((v) => out(num(v)));
}

/** Reads a case's model (not its data) and classifies it. */
export function inspectCase(dir: string, name = dir.split('/').pop()!): CaseInfo {
  const model = readModel(dir);
  const g = model.graph!;
  const opsetEntry = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  const opset = opsetEntry ? num(opsetEntry.version) : 0;
  const ops = new Set<string>();
  const unsupported = new Map<string, string | undefined>();
  for (const n of g.node ?? []) {
    const s = support(n.opType ?? '', n.domain ?? '', opset);
    const op = n.domain && n.domain !== 'ai.onnx' ? `${n.domain}.${n.opType}` : n.opType!;
    ops.add(op);
    if (!s.ok) unsupported.set(s.op, s.note);
  }
  const info: CaseInfo = {
    name,
    dir,
    opset,
    ops: [...ops].sort(),
    unsupported: [...unsupported].map(([op, note]) => (note ? { op, note } : { op })),
  };
  info.dtypeSkip = dtypeSkip(g, dir);
  return info;
}

function dtypeSkip(g: O.IGraphProto, dir: string): string | undefined {
  for (const [kind, list] of [['input', g.input ?? []], ['output', g.output ?? []]] as const)
    for (const vi of list) {
      const tt = vi.type?.tensorType;
      if (!tt) return `${kind} '${vi.name}' is not a tensor (${Object.keys(vi.type ?? {}).find((k) => k !== 'denotation') ?? 'no type'})`;
      const p = dtypeProblem(tt.elemType, `${kind} '${vi.name}'`);
      if (p) return p;
    }
  for (const t of g.initializer ?? []) {
    const p = dtypeProblem(t.dataType, `initializer '${t.name}'`);
    if (p) return p;
  }
  for (const n of g.node ?? [])
    for (const a of n.attribute ?? [])
      if (a.t) {
        const p = dtypeProblem(a.t.dataType, `${n.opType} '${n.name || n.output?.[0]}' attribute ${a.name}`);
        if (p) return p;
      }
  // Constants and initializers beyond the i32 range are clamped by the importer ("to the end"
  // in Slice); recorded data is what gets compared, so there they are a skip.
  const ins = runtimeInputs(g);
  const files = [...dataFiles(dir, 'input').map((f, i) => [f, ins[i]] as const), ...dataFiles(dir, 'output').map((f, i) => [f, g.output?.[i]] as const)];
  for (const [f, vi] of files) {
    const file = f.split('/').pop()!;
    const t = decodeTensorFile(f, vi);
    if (!t) return `${file} is not a TensorProto`;
    const p = dtypeProblem(t.dataType, file);
    if (p) return p;
    if (int64OutOfRange(t)) return `${file} has int64 values outside the i32 range`;
    // Some cases of the suite record data whose shape contradicts the model's static one.
    const declared = vi?.type?.tensorType?.shape?.dim?.map((d) => (d.dimValue !== null && d.dimValue !== undefined ? num(d.dimValue) : -1));
    const recorded = (t.dims ?? []).map(num);
    if (declared && (declared.length !== recorded.length || declared.some((d, k) => d > 0 && d !== recorded[k])))
      return `suite data: ${file} ('${vi!.name}') is [${recorded}], the model declares [${declared.map((d) => (d > 0 ? d : '?'))}]`;
  }
  return undefined;
}

/** A recorded tensor, as the value `vi` it feeds or is compared with declares it. */
function decodeTensorFile(path: string, vi?: O.IValueInfoProto): O.TensorProto | undefined {
  let t: O.TensorProto;
  try {
    t = onnx.TensorProto.decode(readFileSync(path));
  } catch {
    return undefined;
  }
  const T = onnx.TensorProto.DataType;
  if (t.dataType === T.UINT16 && vi?.type?.tensorType?.elemType === T.BFLOAT16) t.dataType = T.BFLOAT16; // same bits
  return t;
}

function readTensorFile(path: string, vi: O.IValueInfoProto | undefined, dir: string): Tensor {
  const t = decodeTensorFile(path, vi);
  if (!t) throw new Error(`${path}: not a TensorProto`);
  return tensorFromProto(t, dir, path);
}

/** The recorded inputs (by graph input name) and expected outputs (by graph output name). */
export function loadData(dir: string, model = readModel(dir)): { feeds: Record<string, Tensor>; expected: [string, Tensor][] } {
  const g = model.graph!;
  const ins = runtimeInputs(g);
  const feeds: Record<string, Tensor> = {};
  dataFiles(dir, 'input').forEach((f, i) => {
    if (i >= ins.length) throw new Error(`${f}: the model has only ${ins.length} runtime inputs`);
    feeds[ins[i].name!] = readTensorFile(f, ins[i], dir);
  });
  const expected = dataFiles(dir, 'output').map((f, i): [string, Tensor] => {
    const vi = g.output?.[i];
    if (!vi?.name) throw new Error(`${f}: the model has only ${g.output?.length ?? 0} outputs`);
    return [vi.name, readTensorFile(f, vi, dir)];
  });
  return { feeds, expected };
}

/**
 * Import + bind the symbolic dims from the recorded input shapes + the EVAL pipeline (fp32).
 * An input declared without a shape takes the recorded one.
 */
export function compileCase(dir: string, feeds: Record<string, Tensor>, opts: { target?: { f16: boolean }; freeze?: boolean } = {}): Graph {
  const g = importOnnx(readFileSync(join(dir, 'model.onnx')), { baseDir: dir, label: dir.split('/').pop() });
  const dims: Record<string, number> = {};
  let batch: number | undefined;
  for (const name of g.inputs) {
    const v = g.values.get(name)!;
    const t = feeds[name];
    if (!t) throw new Error(`no recorded data for input '${name}'`);
    if (v.shape.length === 0 && t.shape.length > 0) v.shape = [...t.shape]; // declared without a shape
    if (v.shape.length !== t.shape.length) throw new Error(`input '${name}' is declared [${v.shape}] but recorded [${t.shape}]`);
    if (opts.freeze) {
      if (v.dtype !== t.dtype) throw new Error(`input '${name}' is declared ${v.dtype} but recorded ${t.dtype}`);
      Object.assign(v, { role: 'const', shape: [...t.shape], init: t });
      continue;
    }
    v.shape.forEach((d, k) => {
      if (typeof d === 'number') return;
      if (dims[d] !== undefined && dims[d] !== t.shape[k]) throw new Error(`dimension '${d}' is both ${dims[d]} and ${t.shape[k]} in the recorded inputs`);
      dims[d] = t.shape[k];
      if (k === 0) batch ??= t.shape[k];
    });
  }
  if (opts.freeze) g.inputs = [];
  const ctx = passCtx({ policy: 'fp32', loss: 'none', batch: batch ?? 1, dims, target: opts.target ?? { f16: true } });
  return runPipeline(g, ctx, EVAL_PIPELINE);
}

/** Compares one result with the expected tensor; the reason it differs, or undefined. */
export function compareTensor(got: Tensor | undefined, want: Tensor, what: string): string | undefined {
  if (!got) return `${what}: no value`;
  if (got.dtype !== want.dtype) return `${what}: dtype ${got.dtype}, expected ${want.dtype}`;
  if (got.shape.join() !== want.shape.join()) return `${what}: shape [${got.shape}], expected [${want.shape}]`;
  if (got.data.length !== want.data.length) return `${what}: ${got.data.length} values, expected ${want.data.length}`;
  const exact = !isFloat(want.dtype);
  let bad = 0;
  let first = -1;
  let worst = 0;
  for (let i = 0; i < want.data.length; i++) {
    const a = got.data[i];
    const b = want.data[i];
    let ok: boolean;
    if (exact) ok = a === b;
    else if (Number.isNaN(b)) ok = Number.isNaN(a);
    else if (!Number.isFinite(b)) ok = a === b;
    else {
      const err = Math.abs(a - b);
      ok = err <= ATOL + RTOL * Math.abs(b); // false for NaN
      if (!ok && Number.isFinite(err)) worst = Math.max(worst, err);
    }
    if (!ok) {
      bad++;
      if (first < 0) first = i;
    }
  }
  if (!bad) return undefined;
  return `${what}: ${bad}/${want.data.length} values differ, first at [${first}]: got ${got.data[first]}, expected ${want.data[first]}${worst ? ` (max abs err ${worst.toPrecision(3)})` : ''}`;
}

function compareOutputs(got: (name: string) => Tensor | undefined, expected: [string, Tensor][]): string | undefined {
  for (const [name, want] of expected) {
    const r = compareTensor(got(name), want, `output '${name}'`);
    if (r) return r;
  }
  return undefined;
}

const oneLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n').filter(Boolean).slice(0, 2).join(' | ');

/** Runs a compiled graph on WebGPU; returns the values asked for (all of them by default). */
export async function runOnWebGpu(gpu: Gpu, g: Graph, feeds: Record<string, Tensor>, names?: string[]): Promise<Map<string, Tensor>> {
  const want = names ?? [...g.values.keys()];
  const code = generate({ main: g }, { f16: gpu.hasF16 }, { keep: { main: want } });
  const map = code.bufferOf.main;
  const { device } = gpu;
  device.pushErrorScope('validation');
  let prog: GpuProgram | undefined;
  try {
    prog = await GpuProgram.create(gpu, code);
    for (const v of g.values.values()) if (v.init) prog.write(map[v.name], v.init.data);
    for (const name of g.inputs) prog.write(map[name], feeds[name].data);
    prog.run('main');
    const ts = await prog.read(want.map((n) => map[n]));
    // Views share a buffer with their root: give each value its own logical type.
    return new Map(want.map((n, i) => [n, { ...ts[i], dtype: g.values.get(n)!.dtype, shape: staticShape(g.values.get(n)!) }]));
  } finally {
    prog?.destroy();
    const err = await device.popErrorScope();
    if (err) throw new Error(`WebGPU validation error: ${err.message}`);
  }
}

/**
 * The first node whose GPU result disagrees with the interpreter's on the same graph (each
 * node's inputs are the GPU's own, so an earlier divergence can carry on; the first one named
 * is where it starts).
 */
function firstDivergence(g: Graph, gpuVals: Map<string, Tensor>, ref: Map<string, Tensor>): string | undefined {
  for (const n of g.nodes)
    for (const o of n.outputs) {
      if (!o || !ref.has(o)) continue;
      const r = compareTensor(gpuVals.get(o), ref.get(o)!, `value '${o}'`);
      if (r) return `first divergence from the interpreter at ${n.op} '${n.name}': ${r}`;
    }
  return undefined;
}

export interface RunOptions {
  /** The WebGPU device; without it the webgpu backend is skipped. */
  gpu?: Gpu;
  backends?: readonly Backend[];
  /** A case whose GPU results are not back after this long fails (default 60 s). */
  gpuTimeoutMs?: number;
}

/** The promise's value, or an error after `ms` (a hung queue must not stop the whole run). */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no result after ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Classifies and, when it can, runs one case on the requested backends. */
export async function runCase(info: CaseInfo, opts: RunOptions = {}): Promise<CaseResult> {
  const t0 = performance.now();
  const want = new Set(opts.backends ?? BACKENDS);
  let frozen: string | undefined;
  const done = (interp: Outcome, webgpu: Outcome): CaseResult => ({ info, interp, webgpu, ...(frozen ? { frozen } : {}), ms: performance.now() - t0 });
  const skipAll = (reason: string) => done({ status: 'skip', reason }, { status: 'skip', reason });
  if (info.unsupported.length) return skipAll(`unsupported ${info.unsupported.map((u) => (u.note ? `${u.op} (${u.note})` : u.op)).join(', ')}`);
  if (info.dtypeSkip) return skipAll(info.dtypeSkip);

  let g: Graph;
  let feeds: Record<string, Tensor>;
  let expected: [string, Tensor][];
  try {
    ({ feeds, expected } = loadData(info.dir));
  } catch (e) {
    const reason = `data: ${oneLine(e)}`;
    return done({ status: 'fail', reason }, { status: 'fail', reason });
  }
  if (!expected.length) return skipAll('no recorded outputs');
  const target = { f16: opts.gpu?.hasF16 ?? true };
  try {
    g = compileCase(info.dir, feeds, { target });
  } catch (first) {
    try {
      g = compileCase(info.dir, feeds, { target, freeze: true });
      frozen = oneLine(first);
    } catch {
      const reason = `compile: ${oneLine(first)}`;
      return done({ status: 'fail', reason }, { status: 'fail', reason });
    }
  }

  let interp: Outcome = { status: 'skip', reason: 'not requested' };
  let env: Map<string, Tensor> | undefined;
  if (want.has('interp')) {
    try {
      env = runGraph(g, feeds);
      const r = compareOutputs((n) => env!.get(n), expected);
      interp = r ? { status: 'fail', reason: r } : { status: 'pass' };
    } catch (e) {
      interp = { status: 'fail', reason: `interpreter: ${oneLine(e)}` };
    }
  }

  let webgpu: Outcome = { status: 'skip', reason: 'not requested' };
  if (want.has('webgpu')) {
    if (!opts.gpu) webgpu = { status: 'skip', reason: 'no WebGPU device' };
    else {
      try {
        // Everything is read back (the suite's tensors are small) to localise a mismatch.
        const vals = await withTimeout(runOnWebGpu(opts.gpu, g, feeds), opts.gpuTimeoutMs ?? 60_000);
        const r = compareOutputs((n) => vals.get(n), expected);
        if (!r) webgpu = { status: 'pass' };
        else {
          let ref = env;
          if (!ref) try { ref = runGraph(g, feeds); } catch { /* no oracle to localise with */ }
          const where = ref ? firstDivergence(g, vals, ref) : undefined;
          webgpu = { status: 'fail', reason: where ? `${r}; ${where}` : r };
        }
      } catch (e) {
        webgpu = { status: 'fail', reason: `webgpu: ${oneLine(e)}` };
      }
    }
  }
  return done(interp, webgpu);
}

/** Every case of the suite, classified (no data is run). */
export function discover(root = NODE_TESTS_DIR, filter?: (name: string) => boolean): CaseInfo[] {
  return listCases(root)
    .filter((n) => !filter || filter(n))
    .map((n) => {
      try {
        return inspectCase(join(root, n), n);
      } catch (e) {
        return { name: n, dir: join(root, n), opset: 0, ops: [], unsupported: [], dtypeSkip: `cannot read the model: ${oneLine(e)}` };
      }
    });
}

/** Whether every op of the case is in the op table and its data types are carried. */
export function runnable(info: CaseInfo): boolean {
  return !info.unsupported.length && !info.dtypeSkip;
}

// ---------------------------------------------------------------------------------------------
// The report.

interface Counts {
  pass: number;
  fail: number;
  skip: number;
}

const zero = (): Counts => ({ pass: 0, fail: 0, skip: 0 });

/**
 * The report: per op type (a case counts under every op type its model contains), totals (per
 * case), failed cases with their reasons, and the unsupported op types with the number of
 * cases that use them.
 */
export function formatReport(results: CaseResult[]): string {
  const perOp = new Map<string, Record<Backend, Counts>>();
  const total: Record<Backend, Counts> = { interp: zero(), webgpu: zero() };
  const unsupported = new Map<string, number>();
  for (const r of results) {
    for (const b of BACKENDS) total[b][r[b].status]++;
    for (const op of r.info.ops) {
      let row = perOp.get(op);
      if (!row) perOp.set(op, (row = { interp: zero(), webgpu: zero() }));
      for (const b of BACKENDS) row[b][r[b].status]++;
    }
    for (const u of r.info.unsupported) {
      const key = u.note ? `${u.op} (${u.note})` : u.op;
      unsupported.set(key, (unsupported.get(key) ?? 0) + 1);
    }
  }
  const lines: string[] = [];
  const w = Math.max(12, ...[...perOp.keys()].map((k) => k.length));
  const cell = (c: Counts) => `${String(c.pass).padStart(5)} ${String(c.fail).padStart(5)} ${String(c.skip).padStart(5)}`;
  lines.push(`${'op type'.padEnd(w)} | ${'interp'.padEnd(17)} | webgpu`);
  lines.push(`${''.padEnd(w)} |  pass  fail  skip |  pass  fail  skip`);
  lines.push(`${'-'.repeat(w)}-+-------------------+------------------`);
  const runs = (c: Record<Backend, Counts>) => c.interp.pass + c.interp.fail + c.webgpu.pass + c.webgpu.fail;
  // Ops that ran somewhere first, then the rest, each alphabetically.
  const keys = [...perOp.keys()].sort((a, b) => Number(runs(perOp.get(b)!) > 0) - Number(runs(perOp.get(a)!) > 0) || a.localeCompare(b));
  for (const op of keys) {
    const c = perOp.get(op)!;
    lines.push(`${op.padEnd(w)} | ${cell(c.interp)} | ${cell(c.webgpu)}`);
  }
  lines.push(`${'-'.repeat(w)}-+-------------------+------------------`);
  lines.push(`${`total (${results.length} cases)`.padEnd(w)} | ${cell(total.interp)} | ${cell(total.webgpu)}`);
  lines.push('(a case counts under every op type of its model; the total counts each case once)');

  const failed = results.filter((r) => r.interp.status === 'fail' || r.webgpu.status === 'fail');
  lines.push('', `Failed cases (${failed.length}):`);
  for (const r of failed) {
    const parts: string[] = [];
    const same = r.interp.status === 'fail' && r.webgpu.status === 'fail' && r.interp.reason === r.webgpu.reason;
    if (same) parts.push(`[both] ${(r.interp as { reason: string }).reason}`);
    else for (const b of BACKENDS) if (r[b].status === 'fail') parts.push(`[${b}] ${(r[b] as { reason: string }).reason}`);
    lines.push(`  ${r.info.name} (${r.info.ops.join(' ')}): ${parts.join('  ')}`);
  }
  const frozen = results.filter((r) => r.frozen);
  lines.push('', `Ran with the recorded inputs frozen into constants (${frozen.length}; the first compile said):`);
  for (const r of frozen) lines.push(`  ${r.info.name}: ${r.frozen}`);
  const skippedDtype = results.filter((r) => !r.info.unsupported.length && r.info.dtypeSkip);
  lines.push('', `Skipped for data types or inconsistent data (${skippedDtype.length}):`);
  for (const r of skippedDtype) lines.push(`  ${r.info.name}: ${r.info.dtypeSkip}`);
  lines.push('', `Unsupported op types (${unsupported.size}), with the number of cases using each:`);
  const us = [...unsupported].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const uw = Math.max(...us.map(([op, n]) => `${op} ${n}`.length)) + 2;
  const perLine = Math.max(1, Math.floor(120 / uw));
  for (let i = 0; i < us.length; i += perLine)
    lines.push('  ' + us.slice(i, i + perLine).map(([op, n]) => `${op} ${n}`.padEnd(uw)).join('').trimEnd());
  return lines.join('\n');
}
