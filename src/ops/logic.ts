// Variadic elementwise ops (Max, Min, Sum, Mean over 1..N broadcast inputs), Mod, boolean
// logic (And, Or, Xor) and float classification (IsNaN, IsInf), with their gradient ops.
//
// Conventions shared by the references and the kernels:
//  - Max/Min propagate NaN (as numpy's maximum): the fold keeps its accumulator when that is
//    NaN or wins the comparison, otherwise takes the next operand. Between -0 and +0 the later
//    operand wins (ONNX leaves that open);
//  - Sum and Mean add left to right in f32 (then divide by N), so the reference rounds after
//    each addition exactly as the kernel does;
//  - gradients of Max/Min go to the operands equal to the result, split evenly among tied
//    operands (PyTorch's rule for maximum/minimum of two tensors, extended to N); Sum passes
//    dy to each operand and Mean dy / N, each summed back to its operand's shape;
//  - Mod: fmod = 1 is C's fmod (sign of the dividend, exact: the kernel subtracts scaled copies
//    of the divisor, each step exact, rather than computing a - b trunc(a / b) in f32);
//    fmod = 0 is Python's (sign of the divisor) and, as the ONNX spec says, only for integers.
//    An integer divisor of 0 gives 0 (WGSL's %). d/da = 1, d/db = -trunc(a / b) with the
//    quotient rounded to f32 first (the kernel's).
import { isFloat, type DType } from '../ir/dtypes.js';
import type { Node } from '../ir/graph.js';
import { wgslMath } from './math.js';
import { sumTo } from './elementwise.js';
import { ewRow, floatOnly, numeric } from './activations.js';
import { attrInt, type OpRow, type ValueType } from './types.js';

const MAX_INPUTS = 2 ** 31 - 1;

const isF = (t: ValueType | undefined) => !!t && isFloat(t.dtype);

function extremum(op: 'Max' | 'Min'): OpRow {
  const beats = op === 'Max' ? (a: number, b: number) => a > b : (a: number, b: number) => a < b;
  const cmp = op === 'Max' ? '>' : '<';
  const fn = `mpc_${op.toLowerCase()}`;
  return ewRow({
    op,
    opsets: [6, 22],
    precision: 'follow',
    arity: [1, MAX_INPUTS],
    out: numeric,
    f: () => (...xs) => xs.reduce((a, b) => (Number.isNaN(a) || beats(a, b) ? a : b)),
    wgsl: (_n, w, ins) => {
      if (isF(ins[0])) {
        wgslMath(w, 'mpc_inf');
        w.define(`fn ${fn}(a: f32, b: f32) -> f32 { return select(b, a, mpc_isnan(a) || a ${cmp} b); }\n`);
      } else w.define(`fn ${fn}_i(a: i32, b: i32) -> i32 { return select(b, a, a ${cmp} b); }\n`);
      const f = isF(ins[0]) ? fn : `${fn}_i`;
      return (...xs) => xs.reduce((a, b) => `${f}(${a}, ${b})`);
    },
    grad: (ctx, dy) => {
      const xs = ctx.node.inputs;
      if (!isFloat(ctx.type(xs[0]).dtype)) return xs.map(() => undefined);
      if (xs.length === 1) return [dy];
      const y = ctx.node.outputs[0];
      return xs.map((x, k) => sumTo(ctx, ctx.emit('mpc.ExtremumGrad', [dy, y, ...xs], { index: k })[0], ctx.type(x).shape));
    },
  });
}

/** Sum (mean = false) or Mean of the operands, added left to right in f32 for floats. */
function total(op: 'Sum' | 'Mean'): OpRow {
  return ewRow({
    op,
    opsets: [6, 22],
    precision: 'deny',
    arity: [1, MAX_INPUTS],
    out: op === 'Mean' ? floatOnly : numeric,
    f: (_n, ins) => {
      const float = isF(ins[0]);
      return (...xs) => {
        let s = xs[0];
        for (let k = 1; k < xs.length; k++) s = float ? Math.fround(s + xs[k]) : s + xs[k];
        return op === 'Mean' ? s / xs.length : s;
      };
    },
    wgsl: () => (...xs) => {
      const s = xs.reduce((a, b) => `(${a} + ${b})`);
      return op === 'Mean' ? `${s} / ${xs.length}.0` : s;
    },
    grad: (ctx, dy) => {
      const xs = ctx.node.inputs;
      if (!isFloat(ctx.type(xs[0]).dtype)) return xs.map(() => undefined);
      let d = dy;
      // dy / N: N is exact in every float format (1/N would be rounded to dy's).
      if (op === 'Mean' && xs.length > 1) d = ctx.emit('Div', [dy, ctx.constant({ dtype: ctx.type(dy).dtype, shape: [], data: Float32Array.of(xs.length) })])[0];
      return xs.map((x) => sumTo(ctx, d, ctx.type(x).shape));
    },
  });
}

function fmodOf(n: Node): 0 | 1 {
  const f = attrInt(n, 'fmod', 0);
  if (f !== 0 && f !== 1) throw new Error(`Mod '${n.name}': fmod must be 0 or 1, got ${f}`);
  return f;
}

/** Python's integer modulo: the remainder takes the divisor's sign. */
function pyMod(a: number, b: number): number {
  const r = a % b;
  return r !== 0 && r < 0 !== b < 0 ? r + b : r;
}

const modRow = ewRow({
  op: 'Mod',
  opsets: [10, 22],
  precision: 'follow',
  arity: [2, 2],
  out: (n, ins) => {
    const t = numeric(n, ins);
    if (isFloat(t) && fmodOf(n) === 0) throw new Error(`Mod '${n.name}': floating-point inputs need fmod = 1 (ONNX)`);
    return t;
  },
  f: (n) => (fmodOf(n) === 1 ? (a, b) => a % b : pyMod),
  wgsl: (n, w, ins) => {
    if (isF(ins[0])) {
      wgslMath(w, 'mpc_inf');
      w.define(`// C's fmod(a, b), exact: |a| minus the largest fitting power-of-two multiple of |b|, repeatedly
// (each subtraction is exact: s <= r < 2s).
fn mpc_fmod(a: f32, b: f32) -> f32 {
  let d = abs(b);
  var r = abs(a);
  if (mpc_isnan(a) || mpc_isnan(b) || (bitcast<u32>(a) & 0x7fffffffu) == 0x7f800000u || d == 0.0) { return mpc_nan(); }
  loop {
    if (!(r >= d)) { break; }
    var s = ldexp(d, frexp(r).exp - frexp(d).exp);
    if (s > r) { s = s * 0.5; }
    r = r - s;
  }
  return bitcast<f32>(bitcast<u32>(r) | (bitcast<u32>(a) & 0x80000000u));
}
`);
      return (a, b) => `mpc_fmod(${a}, ${b})`;
    }
    if (fmodOf(n) === 1) return (a, b) => `(${a} % ${b})`;
    w.define(`fn mpc_pymod(a: i32, b: i32) -> i32 {
  let r = a % b;
  return select(r, r + b, r != 0 && ((r < 0) != (b < 0)));
}
`);
    return (a, b) => `mpc_pymod(${a}, ${b})`;
  },
  grad: (ctx, dy) => {
    const [a, b] = ctx.node.inputs;
    if (!isFloat(ctx.type(a).dtype)) return [undefined, undefined];
    return [sumTo(ctx, dy, ctx.type(a).shape), sumTo(ctx, ctx.emit('mpc.ModGrad', [dy, a, b])[0], ctx.type(b).shape)];
  },
});

function boolOnly(n: Node, ins: (ValueType | undefined)[]): DType {
  for (const t of ins) if (t && t.dtype !== 'bool') throw new Error(`${n.op} '${n.name}': needs bool inputs, got ${ins.map((x) => x?.dtype).join(', ')}`);
  return 'bool';
}

function logic(op: string, f: (a: boolean, b: boolean) => boolean, wgsl: (a: string, b: string) => string): OpRow {
  return ewRow({
    op,
    opsets: [7, 22],
    precision: 'none',
    arity: [2, 2],
    out: boolOnly,
    f: () => (a, b) => (f(a !== 0, b !== 0) ? 1 : 0),
    wgsl: () => (a, b) => `select(0, 1, ${wgsl(`(${a} != 0)`, `(${b} != 0)`)})`,
  });
}

function floatToBool(n: Node, ins: (ValueType | undefined)[]): DType {
  floatOnly(n, ins);
  return 'bool';
}

const detect = (n: Node, key: string) => attrInt(n, key, 1) !== 0;

export const logicOps: OpRow[] = [
  extremum('Max'),
  extremum('Min'),
  // Inputs [dy, y, x0..xn-1], attribute index k: dy / (number of x_j equal to y) where x_k == y.
  ewRow({
    op: 'mpc.ExtremumGrad',
    precision: 'follow',
    arity: [3, MAX_INPUTS],
    out: (n, ins) => floatOnly(n, ins.slice(0, 2)),
    f: (n) => {
      const k = attrInt(n, 'index');
      return (dy, y, ...xs) => (xs[k] === y ? Math.fround(dy / xs.filter((x) => x === y).length) : 0);
    },
    wgsl: (n) => {
      const k = attrInt(n, 'index');
      return (dy, y, ...xs) => `select(0.0, ${dy} / (${xs.map((x) => `select(0.0, 1.0, ${x} == ${y})`).join(' + ')}), ${xs[k]} == ${y})`;
    },
  }),
  total('Sum'),
  total('Mean'),
  modRow,
  // -dy trunc(a / b), the quotient rounded to f32.
  ewRow({
    op: 'mpc.ModGrad',
    precision: 'follow',
    arity: [3, 3],
    out: floatOnly,
    f: () => (dy, a, b) => -dy * Math.trunc(Math.fround(a / b)),
    wgsl: () => (dy, a, b) => `-${dy} * trunc(${a} / ${b})`,
  }),
  logic('And', (a, b) => a && b, (a, b) => `${a} && ${b}`),
  logic('Or', (a, b) => a || b, (a, b) => `${a} || ${b}`),
  logic('Xor', (a, b) => a !== b, (a, b) => `${a} != ${b}`),
  ewRow({
    op: 'IsNaN',
    opsets: [9, 22],
    precision: 'none',
    arity: [1, 1],
    out: floatToBool,
    f: () => (x) => (Number.isNaN(x) ? 1 : 0),
    wgsl: (_n, w) => {
      wgslMath(w, 'mpc_inf');
      return (x) => `select(0, 1, mpc_isnan(${x}))`;
    },
  }),
  ewRow({
    op: 'IsInf',
    opsets: [10, 22],
    precision: 'none',
    arity: [1, 1],
    out: floatToBool,
    f: (n) => {
      const [pos, neg] = [detect(n, 'detect_positive'), detect(n, 'detect_negative')];
      return (x) => ((pos && x === Infinity) || (neg && x === -Infinity) ? 1 : 0);
    },
    wgsl: (n) => {
      const tests = [detect(n, 'detect_positive') ? '0x7f800000u' : '', detect(n, 'detect_negative') ? '0xff800000u' : ''].filter(Boolean);
      return (x) => (tests.length ? `select(0, 1, ${tests.map((b) => `bitcast<u32>(${x}) == ${b}`).join(' || ')})` : '0');
    },
  }),
];
