// The importer and compiler on malformed models. A fixed-seed corpus of mutated bundled
// models (src/conformance/fuzz.ts: structure-aware mutations of the decoded message plus raw
// byte flips and cuts) goes through compileModel in this process: every case must compile or
// fail with a clean user error (an InputError without JavaScript internals in its message),
// within a time bound, leaving no file behind. Then the validator's own rules, one by one,
// on hand-made models; the CLI side (one stderr line, exit 2, external data) is in
// test/fuzz-cli.test.ts.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import onnxProto from 'onnx-proto';
import type { onnx as O } from 'onnx-proto';
import { bundledModels, classify, INTERNALS, makeCase, makeScratch, OUTCOMES, runCase, strayFiles, type Outcome, type Scratch } from '../src/conformance/fuzz.js';
import { compileModel } from '../src/compile/compile.js';
import { importOnnx, InputError } from '../src/onnx/import.js';
import { MAX_BUFFER_BYTES, problemLine, validateModel } from '../src/onnx/validate.js';
import { lowerModel } from '../src/compile/compile.js';
import { passCtx } from '../src/compile/options.js';
import { reportError } from '../src/cli/errors.js';
import type { Pass } from '../src/passes/pass.js';

const onnx = onnxProto.onnx;
const ROOT = resolve(import.meta.dirname, '..');
const MODELS = bundledModels(ROOT);
const MLP = join(ROOT, 'models', 'mlp.onnx');

let scratch: Scratch;
let tmp: string;
beforeAll(() => {
  scratch = makeScratch();
  tmp = mkdtempSync(join(tmpdir(), 'mpc-fuzz-test-'));
});
afterAll(() => {
  rmSync(scratch.root, { recursive: true, force: true });
  rmSync(tmp, { recursive: true, force: true });
});

const CORPUS = 2000;
const SEED = 20260;
/** Per-case bound: a case that passes validation compiles a small model at batch 2 in well under a second. */
const CASE_MS = 10_000;

describe('fuzz corpus through compileModel', () => {
  it(`${CORPUS} mutated models (seed ${SEED}): each compiles or is a clean user error, in time, with no stray files`, () => {
    expect(MODELS.length).toBeGreaterThanOrEqual(3);
    const counts = Object.fromEntries(OUTCOMES.map((k) => [k, 0])) as Record<Outcome, number>;
    const bad: string[] = [];
    const mutationKinds = new Set<string>();
    for (let i = 0; i < CORPUS; i++) {
      const c = makeCase(SEED, i, MODELS, scratch);
      for (const m of c.mutations) mutationKinds.add(m.split(/[ ':]/)[0]);
      const r = runCase(c, scratch);
      const outcome: Outcome = r.ms > CASE_MS ? 'timeout' : r.outcome;
      counts[outcome]++;
      const stray = strayFiles(scratch);
      if (outcome !== 'ok' && outcome !== 'user error') bad.push(`case ${i} (${c.model}: ${c.mutations.join(', ')}): ${outcome} ${r.message} ${r.ms.toFixed(0)} ms`);
      if (stray.length) bad.push(`case ${i}: stray files ${stray.join(', ')}`);
    }
    expect(bad, bad.slice(0, 10).join('\n')).toEqual([]);
    // The corpus reaches the passes, not only the validator, and the validator rejects most.
    expect(counts.ok).toBeGreaterThan(CORPUS * 0.05);
    expect(counts['user error']).toBeGreaterThan(CORPUS * 0.5);
  }, 240_000);

  it('the same seed gives the same cases; another seed others', () => {
    const a = makeCase(7, 3, MODELS, scratch);
    const b = makeCase(7, 3, MODELS, scratch);
    const c = makeCase(8, 3, MODELS, scratch);
    expect(Buffer.from(a.bytes).equals(Buffer.from(b.bytes))).toBe(true);
    expect(a.mutations).toEqual(b.mutations);
    expect(Buffer.from(a.bytes).equals(Buffer.from(c.bytes))).toBe(false);
  });

  it('classify: only an InputError without internals is a user error', () => {
    expect(classify(new InputError('m.onnx: bad thing')).outcome).toBe('user error');
    expect(classify(new InputError("Cannot read properties of undefined (reading 'shape')")).outcome).toBe('internal error');
    expect(classify(new InputError('cannot view [3,16,64] as [NaN,16,4,]')).outcome).toBe('internal error');
    expect(classify(new TypeError('x is not a function')).outcome).toBe('internal error');
    expect(classify(new Error('plain')).outcome).toBe('internal error');
  });
});

// ---------------------------------------------------------------------------------------
// The validator's rules on mlp.onnx with one defect each: its message names the problem.

function mlp(): O.ModelProto {
  return onnx.ModelProto.decode(readFileSync(MLP));
}
function enc(m: O.ModelProto): Uint8Array {
  return onnx.ModelProto.encode(m).finish();
}
function rejects(m: O.ModelProto): string {
  try {
    importOnnx(enc(m), { label: 'm.onnx' });
  } catch (e) {
    expect(e).toBeInstanceOf(InputError);
    const msg = (e as Error).message;
    expect(msg).not.toMatch(INTERNALS);
    expect(msg).not.toContain('\n');
    return msg;
  }
  throw new Error('accepted');
}
const input = (m: O.ModelProto) => m.graph!.input!.find((i) => !m.graph!.initializer!.some((t) => t.name === i.name))!;
const attr = (m: O.ModelProto, op: string, name: string) => m.graph!.node!.find((n) => n.opType === op)!.attribute!.find((a) => a.name === name)!;
const T = onnx.AttributeProto.AttributeType;

describe('model validation', () => {
  it('the bundled models are valid', () => {
    for (const f of MODELS) expect(validateModel(onnx.ModelProto.decode(readFileSync(f))), f).toEqual([]);
  });

  it.each([
    [2 ** 31, /input 'input': dimension 2147483648 exceeds 2147483647 \(axis 3\)/],
    [2 ** 53 - 1, /dimension 9007199254740991 exceeds/],
    [-3, /input 'input': dimension -3 is negative \(axis 3\)/],
    [2 ** 30, /input 'input': shape \[1,28,1073741824\] needs 120259084288 bytes, more than the 2147483648-byte limit/],
  ])('a graph input dimension of %s is refused at once', (d, message) => {
    const m = mlp();
    const dims = input(m).type!.tensorType!.shape!.dim!;
    const k = dims.length - 1;
    delete (dims[k] as { dimParam?: string }).dimParam;
    dims[k].dimValue = d;
    const t0 = performance.now();
    expect(() => compileModel(writeTmp(m), { policy: 'fp32', batch: 2 })).toThrow(message);
    expect(performance.now() - t0).toBeLessThan(2000); // was: 10 s, 2.3 GB and SIGTRAP
  });

  it('a non-finite float attribute, a TENSOR attribute without a tensor, a wrong attribute kind: all in one line with node names', () => {
    const m = mlp();
    attr(m, 'Gemm', 'alpha') ? (attr(m, 'Gemm', 'alpha').f = NaN) : m.graph!.node!.find((n) => n.opType === 'Gemm')!.attribute!.push(onnx.AttributeProto.create({ name: 'alpha', type: T.FLOAT, f: NaN }));
    const gemms = m.graph!.node!.filter((n) => n.opType === 'Gemm');
    gemms[1].attribute!.push(onnx.AttributeProto.create({ name: 'beta', type: T.INTS, ints: [1] }));
    m.graph!.node!.unshift(onnx.NodeProto.create({ name: 'c0', opType: 'Constant', output: ['c0_out'], attribute: [onnx.AttributeProto.create({ name: 'value', type: T.TENSOR })] }));
    const msg = rejects(m);
    expect(msg).toMatch(/^m\.onnx: invalid model: /);
    expect(msg).toContain(`node '${gemms[0].name}' (Gemm): attribute 'alpha' is not a finite number`);
    expect(msg).toContain(`node '${gemms[1].name}' (Gemm): attribute 'beta' must be FLOAT, the model gives INTS`);
    expect(msg).toContain("node 'c0' (Constant): attribute 'value' is of type TENSOR but holds no tensor");
  });

  it('raw_data of the wrong length, an unknown dtype, an absurd opset', () => {
    const m = mlp();
    const w = m.graph!.initializer![0];
    w.rawData = w.rawData!.subarray(0, w.rawData!.length - 1);
    m.graph!.initializer![1].dataType = 99;
    m.opsetImport![0].version = 100_000;
    const msg = rejects(m);
    expect(msg).toContain(`initializer '${w.name}': has ${w.rawData.length} bytes of data, expected ${w.rawData.length + 1}`);
    expect(msg).toContain(`initializer '${m.graph!.initializer![1].name}': unsupported ONNX data type 99`);
    expect(msg).toContain('opset version 100000 of the default domain is not a real ONNX opset');
  });

  it('a duplicated output (SSA), a cycle, nodes out of order', () => {
    const dup = mlp();
    const n0 = dup.graph!.node![0];
    dup.graph!.node!.push(onnx.NodeProto.decode(onnx.NodeProto.encode(n0).finish()));
    expect(rejects(dup)).toMatch(new RegExp(`value '${n0.output![0]}' is defined twice \\(by node '${n0.name}' and node`));

    const cyc = mlp();
    const nodes = cyc.graph!.node!;
    nodes[0].input![0] = nodes[nodes.length - 1].output![0];
    expect(rejects(cyc)).toMatch(/the graph has a cycle \('.+' -> .*'\)/);

    const ord = mlp();
    ord.graph!.node!.reverse();
    expect(rejects(ord)).toMatch(/the nodes are not in topological order: node '.+' reads '.+' before node '.+' computes it/);
  });

  it('an undefined input and a renamed graph input', () => {
    const m = mlp();
    input(m).name = 'renamed';
    expect(rejects(m)).toMatch(/node '.+' \(\w+\) reads 'input', which nothing defines/);
  });

  it('many problems: the first eight, then +N more', () => {
    const m = mlp();
    for (const n of m.graph!.node!)
      for (const name of ['epsilon', 'momentum', 'gamma']) n.attribute!.push(onnx.AttributeProto.create({ name, type: T.FLOAT, f: Infinity }));
    const msg = rejects(m);
    const n = 3 * m.graph!.node!.length;
    expect(n).toBeGreaterThan(8);
    expect(msg.split('; ').length).toBe(9);
    expect(msg).toMatch(new RegExp(`; \\+${n - 8} more$`));
    expect(problemLine(['a', 'b', 'c'], 2)).toBe('a; b; +1 more');
  });

  it('the buffer limit is an option', () => {
    const m = mlp();
    expect(validateModel(m)).toEqual([]);
    expect(MAX_BUFFER_BYTES).toBe(2 ** 31);
    const w = m.graph!.initializer!.find((t) => t.dims!.length === 2)!;
    expect(validateModel(m, { maxBufferBytes: 1024 }).join('; ')).toContain(`initializer '${w.name}': shape [${w.dims!.join(',')}] needs`);
  });
});

let tmpN = 0;
function writeTmp(m: O.ModelProto): string {
  const p = join(tmp, `t${tmpN++}.onnx`);
  writeFileSync(p, enc(m));
  return p;
}

describe('internal errors are never user errors', () => {
  const ctx = passCtx({ policy: 'fp32', batch: 2 });
  const failing = (name: string, e: Error): Pass => ({ name, doc: 'throws', run: () => { throw e; } });

  it('lowerModel: a plain Error of shape inference is the model\'s (exit 2), a TypeError or a message with internals is mpc\'s', () => {
    const g = importOnnx(readFileSync(MLP), { label: 'm.onnx' });
    expect(() => lowerModel(g, ctx, [failing('infer-types', new Error("Gemm 'fc': inner dimensions differ (3 vs 4)"))], 'm.onnx')).toThrow(InputError);
    for (const e of [new TypeError("Cannot read properties of undefined (reading 'shape')"), new RangeError('Invalid array length'), new Error("value 'x' has unresolved dimension 'undefined'")]) {
      let got: unknown;
      try {
        lowerModel(g, ctx, [failing('infer-types', e)], 'm.onnx');
      } catch (x) {
        got = x;
      }
      expect(got).toBe(e);
    }
  });

  it('reportError: exit 1, one line saying it is a bug in mpc, asking for a report and naming the model\'s ops; InputError exit 2', () => {
    importOnnx(readFileSync(MLP), { label: 'm.onnx' });
    const lines: string[] = [];
    const write = process.stderr.write;
    const debug = process.env.MPC_DEBUG;
    delete process.env.MPC_DEBUG;
    process.stderr.write = ((s: string) => (lines.push(s), true)) as typeof process.stderr.write;
    let codes: number[];
    try {
      codes = [reportError(new TypeError("Cannot read properties of null (reading 'dims')")), reportError(new InputError('m.onnx: bad'))];
    } finally {
      process.stderr.write = write;
      if (debug !== undefined) process.env.MPC_DEBUG = debug;
    }
    expect(codes).toEqual([1, 2]);
    expect(lines[0]).toMatch(/^mpc: internal error \(a bug in mpc, please report it; model ops: [^)]*Gemm[^)]*\): TypeError: Cannot read properties of null/);
    expect(lines[0].trimEnd()).not.toContain('\n');
    expect(lines[1]).toBe('mpc: m.onnx: bad\n');
  });
});
