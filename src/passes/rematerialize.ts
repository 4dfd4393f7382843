// Rematerialization: recompute cheap values in the backward pass instead of keeping them alive.
//
// Whatever a gradient node reads from the forward pass stays in device memory from its
// producer to that gradient node: these are the activations saved for the backward pass. A
// value whose op is cheap and whose inputs are kept anyway — parameters, constants, the
// step's inputs, or values the backward pass reads itself — is recomputed in the backward pass
// instead, so it dies with its last forward use. Chains of such values are recomputed whole
// (GELU's Div/Erf/Add/Mul from its input, a transposed weight from the weight, an f16 weight
// copy from the f32 master, attention's scores, probabilities and weighted sum from the
// queries, keys and values that its own backward pass keeps).
//
// Cheap is what the op table says: rows of kind 'elementwise' or 'movement' and views are
// recomputed per gradient reader, right before it (fusion then folds the recomputation into
// the reader's kernel); rows with a `recompute` rule (LayerNormalization and Softmax, products
// with a short reduction) once, right before their first gradient reader, shared by the rest.
//
// A widening cast (f16 → f32, exact) is always recomputed: the backward pass then keeps the
// low-precision input, at half the bytes, instead of its f32 twin.
//
// A cheap value whose inputs are not all kept is still recomputed when keeping the inputs it
// lacks costs fewer bytes than keeping it (a trade): under fp16/bf16 the f32 residual stream
// after a sublayer, x + float(f(x)), is recomputed from x (kept for the sublayer's LayerNorm)
// and the f16 sublayer output, which the backward pass keeps instead at half the bytes. A
// traded value is recomputed once, before its first gradient reader; trades chain at most
// MAX_TRADE_CHAIN deep (a traded value recomputed from another one).
//
// Recomputing runs the same kernel on the same inputs, so the results are bit-identical.
import type { Graph, Node } from '../ir/graph.js';
import { byteSize } from '../ir/dtypes.js';
import { isExactWidening } from '../ops/cast.js';
import { opRow } from '../ops/table.js';
import type { ValueType } from '../ops/types.js';
import type { Pass } from './pass.js';

/** Longest chain of ops recomputed for one saved value. */
const MAX_DEPTH = 12;
/** Longest chain of trades: a traded value recomputed from another traded value, and so on. */
const MAX_TRADE_CHAIN = 4;

/** Recomputed per reader: elementwise and movement rows, and views (free: a recomputed view aliases its recomputed input). */
function perReader(n: Node): boolean {
  const row = opRow(n.op);
  if (row.alias) return row.alias.view === true && n.outputs.length === 1;
  return row.kind !== undefined;
}

/** Worth recomputing: per-reader rows, and rows whose `recompute` rule accepts the node. */
function cheap(g: Graph, n: Node): boolean {
  if (perReader(n)) return true;
  const rule = opRow(n.op).recompute;
  if (!rule || opRow(n.op).alias) return false;
  return rule(
    n,
    n.inputs.map((i) => {
      const v = i ? g.values.get(i) : undefined;
      return (v ? { dtype: v.dtype, shape: v.shape as number[] } : undefined) as ValueType;
    }),
  );
}

/** Bytes of a value (Infinity where a dimension is not bound: never traded). */
function bytes(g: Graph, v: string): number {
  const t = g.values.get(v)!;
  return t.shape.reduce<number>((a, d) => a * (typeof d === 'number' ? d : Infinity), byteSize(t.dtype));
}

/** The first node of the backward pass, and the forward producers of values. */
function split(g: Graph): { first: number; fwd: Map<string, Node> } {
  const first = g.nodes.findIndex((n) => n.phase === 'backward');
  const fwd = new Map<string, Node>();
  if (first >= 0) for (const n of g.nodes.slice(0, first)) for (const o of n.outputs) if (o) fwd.set(o, n);
  return { first, fwd };
}

export const rematerialize: Pass = {
  name: 'rematerialize',
  doc: 'recompute cheap forward values (elementwise, transposes, widening casts) in the backward pass instead of keeping them alive',
  run(g) {
    const { first, fwd } = split(g);
    if (first < 0) return g;
    const outputs = new Set(g.outputs);
    const bwdReads = new Set<string>();
    for (const n of g.nodes.slice(first)) for (const i of n.inputs) if (i) bwdReads.add(i);
    const kept = (v: string) => g.values.get(v)!.role !== 'activation' || outputs.has(v) || !fwd.has(v);
    // A widening cast is recomputed from its input, which the backward pass thereby reads.
    for (const v of [...bwdReads]) {
      const n = fwd.get(v);
      if (n && !kept(v) && isExactWidening(g, n)) bwdReads.add(n.inputs[0]);
    }

    // Everything the backward pass reads is available to it: saved, or recomputed in its turn.
    // A cheap value is recomputable when its inputs are available or recomputable (up to
    // MAX_DEPTH ops deep); a widening cast always is (its input is kept instead).
    const memo = new Map<string, boolean>();
    const can = (v: string, depth: number): boolean => {
      if (kept(v) || bwdReads.has(v)) return true;
      const n = fwd.get(v)!;
      if (!cheap(g, n) || depth > MAX_DEPTH) return false;
      let ok = memo.get(v);
      if (ok === undefined) {
        ok = n.inputs.every((i) => !i || can(i, depth + 1));
        memo.set(v, ok);
      }
      return ok;
    };
    const recomputable = (v: string) => {
      const n = fwd.get(v)!;
      return isExactWidening(g, n) || n.inputs.every((i) => !i || can(i, 1));
    };
    const recomputed = new Set([...bwdReads].filter((v) => !kept(v) && cheap(g, fwd.get(v)!) && recomputable(v)));

    // Trading a saved value for smaller saved inputs. `lacking` collects the forward values
    // that recomputing a value needs kept and are not yet (`need`), and the saved values it
    // relies on (`relies`); it may rely on traded values up to MAX_TRADE_CHAIN trades deep
    // (`chain`: the deepest). A value relied on is never traded itself. Candidates go in
    // forward order, so along the residual stream of a transformer every fifth sum stays
    // saved and the four after it are recomputed from it and the sublayer outputs (an unbounded
    // chain would recompute the whole stream from the embedding in every layer: hundreds of
    // kernels a step on a 12-layer GPT). On GPT12 fp16 at batch 8, chains of 2, 3, 4 and 6
    // give peaks of 32.0, 31.5, 31.3 and 31.0 MiB for 1258, 1262, 1266 and 1268 kernels a step.
    const traded = new Map<string, number>(); // value -> its chain depth (1: from saved values only)
    const pinned = new Set<string>();
    const lacking = (v: string, depth: number, need: Set<string>, relies: Set<string>, chain: { depth: number }): boolean => {
      if (kept(v)) return true;
      const t = traded.get(v);
      if (t !== undefined) {
        chain.depth = Math.max(chain.depth, t);
        return t < MAX_TRADE_CHAIN;
      }
      if (bwdReads.has(v)) {
        if (!recomputed.has(v)) relies.add(v);
        return true;
      }
      const n = fwd.get(v)!;
      if (!cheap(g, n) || depth > MAX_DEPTH) need.add(v);
      else for (const i of n.inputs) if (i && !lacking(i, depth + 1, need, relies, chain)) return false;
      return true;
    };
    const order = new Map(g.nodes.map((n, i) => [n, i]));
    const candidates = [...bwdReads].filter((v) => fwd.has(v)).sort((a, b) => order.get(fwd.get(a)!)! - order.get(fwd.get(b)!)!);
    for (const v of candidates) {
      const n = fwd.get(v)!;
      if (kept(v) || recomputed.has(v) || pinned.has(v) || !cheap(g, n)) continue;
      const need = new Set<string>(), relies = new Set<string>(), chain = { depth: 0 };
      if (!n.inputs.every((i) => !i || lacking(i, 1, need, relies, chain)) || !need.size) continue;
      let cost = 0;
      for (const i of need) cost += bytes(g, i);
      if (cost >= bytes(g, v)) continue;
      for (const i of need) bwdReads.add(i);
      for (const i of relies) pinned.add(i);
      traded.set(v, chain.depth + 1);
      recomputed.add(v);
    }
    if (traded.size) memo.clear();
    if (!recomputed.size) return g;

    const nodeNames = new Set(g.nodes.map((n) => n.name));
    const fresh = (base: string, taken: (s: string) => boolean) => {
      let s = base;
      for (let i = 1; taken(s); i++) s = `${base}_${i}`;
      return s;
    };
    // Each gradient node gets its own recomputed copy of the per-reader values it reads
    // (shared only within that copy): then every such value has a single reader, and fusion
    // folds the whole recomputation into the reader's kernel instead of holding it in memory.
    // Values of `recompute` rows are recomputed once, before their first gradient reader.
    const copies = new Map<string, string>(); // `${forward value}|${reader}` (or the value alone, shared) -> its recomputed copy
    const before = new Map<Node, Node[]>(); // gradient node -> nodes recomputed right before it
    // The value to read in the backward pass instead of `v` (recomputing it if it is cheap and
    // its inputs allow; else `v` itself, which is then kept).
    // `within`: recomputing a traded value, whose traded inputs get copies of its own (they die
    // with it, instead of living on to their own readers, which come later in the backward pass).
    const materialize = (v: string, at: Node, within = false): string => {
      const n = fwd.get(v);
      const sharedCopy = (m: Node) => !perReader(m) || (traded.has(v) && !within);
      const key = n && sharedCopy(n) ? v : `${v}|${at.name}`;
      const done = copies.get(key);
      if (done) return done;
      if (kept(v) || (bwdReads.has(v) && !recomputed.has(v))) return v;
      if (!recomputed.has(v) && !(cheap(g, n!) && can(v, 1))) return v;
      const inputs = n!.inputs.map((i) => (i ? materialize(i, at, traded.has(v)) : i));
      // Every output of the node is recomputed (LayerNormalization's statistics come along).
      const outputs = n!.outputs.map((o) => {
        if (!o) return o;
        const out = fresh(`${o}.remat`, (s) => g.values.has(s));
        g.values.set(out, { ...g.values.get(o)!, name: out });
        return out;
      });
      const name = fresh(`${n!.name}.remat`, (s) => nodeNames.has(s));
      nodeNames.add(name);
      const copy: Node = { ...n!, name, inputs, outputs, attrs: { ...n!.attrs }, phase: 'backward', prec: n!.prec && { ...n!.prec, reason: `${n!.prec.reason ?? n!.prec.cls}; recomputed for the backward pass` } };
      const list = before.get(at);
      if (list) list.push(copy);
      else before.set(at, [copy]);
      n!.outputs.forEach((o, k) => {
        if (o) copies.set(sharedCopy(n!) ? o : `${o}|${at.name}`, outputs[k]);
      });
      return copies.get(key)!;
    };
    for (const n of g.nodes.slice(first)) n.inputs = n.inputs.map((i) => (i && recomputed.has(i) ? materialize(i, n) : i));
    g.nodes = g.nodes.flatMap((n) => [...(before.get(n) ?? []), n]);
    return g;
  },
  check: (g) => {
    const { first, fwd } = split(g);
    if (first < 0) return [];
    const errs: string[] = [];
    for (const n of g.nodes.slice(first))
      for (const v of n.inputs) {
        const p = v ? fwd.get(v) : undefined;
        if (p && isExactWidening(g, p) && !g.outputs.includes(v)) errs.push(`gradient node '${n.name}' reads '${v}', the f32 twin of a low-precision value`);
      }
    return errs;
  },
};
