// Einsum, lowered by the decompose pass (OpRow.decompose) into rows the table has:
//   - a label repeated within one operand (a diagonal, 'ii->i'): the two axes moved last,
//     viewed as one [n*n] axis and sliced with step n+1;
//   - a label only one operand has and the output lacks: ReduceSum over it;
//   - operands contracted pairwise from the left. Without a shared summed label, a broadcast
//     Mul of the operands transposed to a common order (outer products, Hadamard products).
//     Otherwise one MatMul: A as [batch, M, K], B as [batch, K, N], batch labels (in both and
//     kept) flattened, M the labels only A keeps, N those only B keeps, K the summed ones; an
//     operand that broadcasts over part of the batch (ellipsis dimensions of size 1) is
//     expanded first, so the GEMM sees a uniform batch stride;
//   - a final Transpose into the output's order.
// Labels are the letters; '...' stands for the leading dimensions (broadcast right-aligned
// across operands, size 1 broadcasting). Without '->' the output is the ellipsis dimensions,
// then the letters used once, in alphabetical order. The `interp` is an f64 reference loop
// over every label (the oracle of the lowering in the tests); no gradient rule or WGSL kernel:
// nothing after the decompose pass sees the row.
import { isFloat } from '../ir/dtypes.js';
import type { Node } from '../ir/graph.js';
import { sizeOf, stridesOf, type Tensor } from '../ir/tensor.js';
import { attrString, type DecomposeCtx, type OpRow, type ValueType } from './types.js';

interface Equation {
  /** Labels of each operand's axes; ellipsis axes are '.0', '.1'... (right-aligned across operands). */
  inputs: string[][];
  output: string[];
  /** Size of every label. */
  sizes: Map<string, number>;
}

function fail(n: Node, msg: string): never {
  throw new Error(`Einsum '${n.name}': ${msg}`);
}

function parse(n: Node, shapes: number[][]): Equation {
  const eq = attrString(n, 'equation').replace(/\s+/g, '');
  const arrow = eq.indexOf('->');
  const lhs = arrow < 0 ? eq : eq.slice(0, arrow);
  const terms = lhs.split(',');
  if (terms.length !== shapes.length) fail(n, `equation '${eq}' has ${terms.length} operands, the node ${shapes.length}`);
  const letters = (term: string, where: string): string[] => {
    const parts = term.split('...');
    if (parts.length > 2) fail(n, `more than one '...' in ${where} '${term}'`);
    for (const ch of parts.join('')) if (!/[A-Za-z]/.test(ch)) fail(n, `'${ch}' in ${where} '${term}' is not a label`);
    return parts.flatMap((p) => [...p]);
  };
  // Ellipsis rank of every operand, and the widest.
  const ell = terms.map((t, k) => {
    const count = letters(t, 'operand').length;
    if (!t.includes('...')) {
      if (count !== shapes[k].length) fail(n, `operand ${k} '${t}' has ${count} labels but rank ${shapes[k].length}`);
      return 0;
    }
    if (count > shapes[k].length) fail(n, `operand ${k} '${t}' has ${count} labels but rank ${shapes[k].length}`);
    return shapes[k].length - count;
  });
  const E = Math.max(0, ...ell);
  const expand = (term: string, e: number): string[] => {
    const [pre, post = ''] = term.split('...');
    const dots = term.includes('...') ? Array.from({ length: e }, (_, i) => `.${E - e + i}`) : [];
    return [...pre, ...dots, ...post];
  };
  const inputs = terms.map((t, k) => expand(t, ell[k]));
  const sizes = new Map<string, number>();
  inputs.forEach((labels, k) =>
    labels.forEach((l, a) => {
      const d = shapes[k][a];
      const seen = sizes.get(l);
      if (seen === undefined || seen === 1) sizes.set(l, d);
      else if (d !== seen && !(l.startsWith('.') && d === 1)) fail(n, `label '${l.startsWith('.') ? '...' : l}' is ${seen} in one place and ${d} in operand ${k}`);
      else if (d !== seen && !l.startsWith('.')) fail(n, `label '${l}' is ${seen} and ${d}`);
    }),
  );
  // A label of size 1 in one operand and n in another broadcasts only within '...'.
  for (const labels of inputs) for (const l of labels) if (!l.startsWith('.')) {
    const all = inputs.flatMap((ls, k) => ls.flatMap((x, a) => (x === l ? [shapes[k][a]] : [])));
    if (all.some((d) => d !== all[0])) fail(n, `label '${l}' has sizes ${all.join(', ')}`);
  }
  let output: string[];
  if (arrow >= 0) {
    const rhs = eq.slice(arrow + 2);
    const [pre, post = ''] = rhs.split('...');
    if (rhs.split('...').length > 2) fail(n, `more than one '...' in the output '${rhs}'`);
    for (const ch of pre + post) if (!/[A-Za-z]/.test(ch)) fail(n, `'${ch}' in the output '${rhs}' is not a label`);
    const dots = rhs.includes('...') ? Array.from({ length: E }, (_, i) => `.${i}`) : [];
    output = [...pre, ...dots, ...post];
    if (!rhs.includes('...') && E > 0) fail(n, `the operands have '...' dimensions but the output '${rhs}' has no '...'`);
  } else {
    const count = new Map<string, number>();
    for (const ls of inputs) for (const l of ls) if (!l.startsWith('.')) count.set(l, (count.get(l) ?? 0) + 1);
    output = [...Array.from({ length: E }, (_, i) => `.${i}`), ...[...count].filter(([, c]) => c === 1).map(([l]) => l).sort()];
  }
  for (const l of output) {
    if (!sizes.has(l)) fail(n, `output label '${l}' is in no operand`);
    if (output.indexOf(l) !== output.lastIndexOf(l)) fail(n, `output label '${l}' is repeated`);
  }
  return { inputs, output, sizes };
}

function outShape(e: Equation): number[] {
  return e.output.map((l) => e.sizes.get(l)!);
}

function infer(n: Node, ins: ValueType[]): ValueType[] {
  if (ins.length < 1) fail(n, 'no operands');
  for (const t of ins) if (!isFloat(t.dtype) || t.dtype !== ins[0].dtype) fail(n, `operands must share one float dtype, got ${ins.map((t) => t.dtype).join(', ')}`);
  return [{ dtype: ins[0].dtype, shape: outShape(parse(n, ins.map((t) => t.shape))) }];
}

/** f64 reference: a loop over every combination of every label. */
function reference(n: Node, ins: Tensor[]): Tensor[] {
  const e = parse(n, ins.map((t) => t.shape));
  const labels = [...e.sizes.keys()];
  const dims = labels.map((l) => e.sizes.get(l)!);
  const idx = new Map(labels.map((l, i) => [l, i]));
  const shape = outShape(e);
  const out = new Float64Array(sizeOf(shape));
  const os = stridesOf(shape);
  const strides = ins.map((t) => stridesOf(t.shape));
  const total = sizeOf(dims);
  const at = new Array<number>(labels.length).fill(0);
  for (let flat = 0; flat < total; flat++) {
    let r = flat;
    for (let d = labels.length - 1; d >= 0; d--) {
      at[d] = r % dims[d];
      r = Math.floor(r / dims[d]);
    }
    let p = 1;
    ins.forEach((t, k) => {
      let off = 0;
      e.inputs[k].forEach((l, a) => {
        if (t.shape[a] !== 1) off += at[idx.get(l)!] * strides[k][a];
      });
      p *= t.data[off];
    });
    let o = 0;
    e.output.forEach((l, a) => (o += at[idx.get(l)!] * os[a]));
    out[o] += p;
  }
  return [{ dtype: ins[0].dtype, shape, data: Float32Array.from(out) }];
}

// ---------------------------------------------------------------------------------------------
// Lowering.

interface Operand {
  v: string;
  labels: string[];
}

function lowerEinsum(ctx: DecomposeCtx): string[] {
  const n = ctx.node;
  const e = parse(n, n.inputs.map((v) => ctx.type(v).shape));
  const shape = (v: string) => ctx.type(v).shape;
  const emit1 = (op: string, inputs: string[], attrs = {}) => ctx.emit(op, inputs, attrs)[0];
  const view = (v: string, s: number[]) => (shape(v).join() === s.join() ? v : emit1('mpc.View', [v], { shape: s }));
  const i64 = (xs: number[]) => ctx.constant({ dtype: 'i64', shape: [xs.length], data: Int32Array.from(xs) });
  /** Transposes an operand so its labels come in `order` (a permutation of them). */
  const permute = (x: Operand, order: string[]): Operand => {
    const perm = order.map((l) => x.labels.indexOf(l));
    if (perm.every((p, i) => p === i)) return { v: x.v, labels: order };
    return { v: emit1('Transpose', [x.v], { perm }), labels: order };
  };

  let ops: Operand[] = n.inputs.map((v, k) => ({ v, labels: e.inputs[k] }));
  // Diagonals: a label twice in one operand.
  ops = ops.map((x) => {
    for (;;) {
      const second = x.labels.findIndex((a, i) => x.labels.indexOf(a) !== i);
      if (second < 0) return x;
      const l = x.labels[second];
      const first = x.labels.indexOf(l);
      const rest = x.labels.filter((_, i) => i !== first && i !== second);
      const perm = [...x.labels.keys()].filter((i) => i !== first && i !== second).concat([first, second]);
      const moved = perm.every((p, i) => p === i) ? x.v : emit1('Transpose', [x.v], { perm });
      const s = shape(moved);
      const d = s[s.length - 1];
      const flat = view(moved, [...s.slice(0, -2), d * d]);
      const diag = emit1('Slice', [flat, i64([0]), i64([d * d]), i64([-1]), i64([d + 1])]);
      x = { v: diag, labels: [...rest, l] };
    }
  });
  const needed = (k: number) => new Set([...e.output, ...ops.flatMap((o, j) => (j === k ? [] : o.labels))]);
  /** Sums the labels of x that `keep` lacks. */
  const reduce = (x: Operand, keep: Set<string>): Operand => {
    const axes = x.labels.flatMap((l, a) => (keep.has(l) ? [] : [a]));
    if (!axes.length) return x;
    return { v: emit1('ReduceSum', [x.v], { axes, keepdims: 0 }), labels: x.labels.filter((l) => keep.has(l)) };
  };
  ops = ops.map((x, k) => reduce(x, needed(k)));

  let acc = ops[0];
  for (let k = 1; k < ops.length; k++) {
    const later = new Set([...e.output, ...ops.slice(k + 1).flatMap((o) => o.labels)]);
    acc = contract(acc, ops[k], later);
  }
  acc = reduce(acc, new Set(e.output));
  const outS = outShape(e);
  return [view(permute(acc, e.output).v, outS)];

  function contract(a: Operand, b: Operand, keep: Set<string>): Operand {
    const inA = new Set(a.labels);
    const inB = new Set(b.labels);
    const batch = a.labels.filter((l) => inB.has(l) && keep.has(l));
    const summed = a.labels.filter((l) => inB.has(l) && !keep.has(l));
    const aOnly = a.labels.filter((l) => !inB.has(l));
    const bOnly = b.labels.filter((l) => !inA.has(l));
    const sizeIn = (x: Operand, l: string) => shape(x.v)[x.labels.indexOf(l)];
    const full = (l: string) => Math.max(sizeIn(a, l), sizeIn(b, l));
    for (const l of summed) if (sizeIn(a, l) !== sizeIn(b, l)) fail(n, `summed '...' dimension broadcasts (${sizeIn(a, l)} vs ${sizeIn(b, l)}): not supported`);
    if (!summed.length) {
      // Broadcast product in the order batch, aOnly, bOnly.
      const order = [...batch, ...aOnly, ...bOnly];
      const place = (x: Operand) => {
        const own = order.filter((l) => x.labels.includes(l));
        const t = permute(x, own);
        return view(t.v, order.map((l) => (x.labels.includes(l) ? sizeIn(x, l) : 1)));
      };
      return { v: emit1('Mul', [place(a), place(b)]), labels: order };
    }
    const M = sizeOf(aOnly.map((l) => sizeIn(a, l)));
    const N = sizeOf(bOnly.map((l) => sizeIn(b, l)));
    const K = sizeOf(summed.map((l) => sizeIn(a, l)));
    const fullBatch = batch.map(full);
    const nb = sizeOf(fullBatch);
    const side = (x: Operand, order: string[], mat: [number, number]) => {
      const t = permute(x, order);
      const own = batch.map((l) => sizeIn(x, l));
      let v = t.v;
      let count = sizeOf(own);
      if (count !== 1 && own.join() !== fullBatch.join()) {
        // Part of the batch broadcasts: expand to the full batch (uniform GEMM batch stride).
        v = emit1('Expand', [v, i64([...fullBatch, ...shape(v).slice(batch.length)])]);
        count = nb;
      }
      return view(v, batch.length ? [count, ...mat] : mat);
    };
    const av = side(a, [...batch, ...aOnly, ...summed], [M, K]);
    const bv = side(b, [...batch, ...summed, ...bOnly], [K, N]);
    const prod = emit1('MatMul', [av, bv]);
    return { v: view(prod, [...fullBatch, ...aOnly.map((l) => sizeIn(a, l)), ...bOnly.map((l) => sizeIn(b, l))]), labels: [...batch, ...aOnly, ...bOnly] };
  }
}

export const einsumOps: OpRow[] = [
  {
    op: 'Einsum',
    domain: '',
    opsets: [12, 22],
    precision: 'allow',
    arity: [1, 64],
    outputs: 1,
    infer,
    interp: (n, ins) => reference(n, ins),
    decompose: lowerEinsum,
  },
];
