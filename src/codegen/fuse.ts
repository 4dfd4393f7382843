// Elementwise fusion: chains of elementwise nodes become one kernel, or the epilogue of the
// kernel that produces their input (a GEMM: bias, activation, residual add, cast).
//
// A node joins the kernel of a consumer when its row has an `expr` (op rows declare it; this
// file names no op), its result is floating point, has the consumer's shape and is read by
// nothing else — not by another node, the host or the next step. The fused kernel computes the
// whole chain per output element in registers and writes only the last value, so the values
// in between never reach device memory (and need no buffer).
//
// Same numbers as unfused: every value in between is rounded to its own dtype exactly where
// the unfused program stored it (`KernelWriter.round`), and arithmetic is f32 in both.
import { byteSize, isFloat, round } from '../ir/dtypes.js';
import { staticShape, type Graph, type Node } from '../ir/graph.js';
import { sizeOf } from '../ir/tensor.js';
import { opRow } from '../ops/table.js';
import type { EmitCtx, Epilogue, Prologue, StoreTail, ValueType } from '../ops/types.js';
import { broadcastIndex } from './index-math.js';
import type { Kernel, Target } from './kernel.js';
import { f32Lit, KernelWriter, mapKernel } from './storage.js';
import { attentionUnfit, emitAttention, type AttentionOptions } from './kernels/attention.js';

/** Storage buffers a fused kernel may bind (WebGPU's guaranteed minimum per shader stage). */
const MAX_BINDINGS = 8;

/** Attention as one kernel: the chains of the scores' GEMM, of the row op over them, and of the GEMM reading its result. */
export interface Attention {
  scores: Node[];
  row: Node[];
  out: Node[];
}

export interface FusionPlan {
  /** Last node of each fused chain -> the chain's nodes in execution order (two or more). */
  groups: Map<Node, Node[]>;
  /** Nodes computed inside another node's kernel. */
  absorbed: Set<Node>;
  /** A GEMM -> operand index -> the unary elementwise node folded into its loads (a cast). */
  prologues: Map<Node, Map<number, Node>>;
  /** A node -> the producer of one of its inputs that its kernels compute too (row `absorbsProducer`). */
  producerOf: Map<Node, Node>;
  /** The last node of an attention pattern -> its three chains, computed by one kernel. */
  attention: Map<Node, Attention>;
  /**
   * The last node of a kernel (a chain, or a node of its own) -> the row computed in its store
   * (OpRow.storeTail: the fp8 quantizer of its result) and the producer that row absorbed.
   */
  tails: Map<Node, Tail>;
}

/** A row computed in the store of the kernel producing its input, with the producer it absorbed. */
export interface Tail {
  node: Node;
  absorbed?: Node;
}

/**
 * Finds the chains. `pinned`: values that must reach memory (graph outputs, values the host
 * reads, state updates' sources). `target`: the adapter's (prologues' worth and attention's
 * layouts depend on it); without one, neither is planned by layout.
 */
export function planFusion(g: Graph, pinned: Set<string>, target = g.meta.target as Target | undefined): FusionPlan {
  const uses = new Map<string, number>();
  for (const n of g.nodes) for (const i of n.inputs) if (i) uses.set(i, (uses.get(i) ?? 0) + 1);
  const index = new Map(g.nodes.map((n, i) => [n, i]));
  // In-place updates (optimizer) overwrite their inputs: a chain may not move a read past one.
  const inPlaceBefore: number[] = [];
  let count = 0;
  for (const n of g.nodes) {
    inPlaceBefore.push(count);
    const alias = opRow(n.op).alias;
    if (alias && !alias.view) count++;
  }
  const type = (v: string): ValueType => {
    const val = g.values.get(v)!;
    return { dtype: val.dtype, shape: staticShape(val) };
  };
  const fusable = (n: Node) => opRow(n.op).expr !== undefined && n.outputs.length === 1 && isFloat(g.values.get(n.outputs[0])!.dtype);
  const producer = new Map<string, Node>();
  for (const n of g.nodes) for (const o of n.outputs) if (o) producer.set(o, n);

  // The producer of `v` seen through views (a view of a contiguous value keeps every element's
  // flat index), with the views passed; undefined when a value on the way has other readers.
  const through = (v: string): { p: Node; views: Node[] } | undefined => {
    const views: Node[] = [];
    let p = producer.get(v);
    while (p && opRow(p.op).alias?.view) {
      if (pinned.has(v) || uses.get(v) !== 1) return undefined;
      views.push(p);
      v = p.inputs[0];
      p = producer.get(v);
    }
    if (!p || pinned.has(v) || uses.get(v) !== 1) return undefined;
    return { p, views };
  };
  const headCapable = (p: Node) => opRow(p.op).epilogue === true && p.outputs.length === 1 && isFloat(g.values.get(p.outputs[0])!.dtype);

  const chainOf = new Map<Node, Node[]>();
  for (const n of g.nodes) {
    if (!fusable(n)) continue;
    const count = sizeOf(type(n.outputs[0]).shape);
    let chain: Node[] = [];
    for (const v of n.inputs) {
      const t = v ? through(v) : undefined;
      if (!t || t.p.phase !== n.phase) continue;
      const { p } = t;
      // A chain of elementwise nodes of the same shape, or a kernel (a GEMM) whose store the
      // chain becomes: its elements in the same flat order (through views).
      // (An input with as many elements as the output is read at the same flat index: views
      // of contiguous values and size-1 broadcasts keep it.)
      let pc = sizeOf(type(v).shape) === count ? chainOf.get(p) : undefined;
      if (!pc && headCapable(p) && sizeOf(type(p.outputs[0]).shape) === count && !chain.some((m) => headCapable(m))) pc = [p];
      if (!pc) continue;
      if (pc.some((m) => headCapable(m)) && chain.some((m) => headCapable(m))) continue;
      if (inPlaceBefore[index.get(n)!] !== inPlaceBefore[index.get(pc[0])!]) continue;
      const merged = [...chain, ...pc];
      if (externals(g, merged.concat(n)) + 1 > MAX_BINDINGS) continue;
      chain = merged;
      chainOf.delete(p);
    }
    chain.push(n);
    chain.sort((a, b) => index.get(a)! - index.get(b)!);
    chainOf.set(n, chain);
  }
  // Shared values: an elementwise chain whose result is read several times, by nodes of one
  // other chain only, is computed inside that chain's kernel (once per element, kept in a
  // register for every reader) instead of reaching memory. GELU's backward pass reads the
  // gradient of its output twice; with this it is one kernel, and no f32 intermediate waits.
  const isView = (x: string) => {
    const q = producer.get(x);
    return q !== undefined && opRow(q.op).alias?.view === true;
  };
  const shared = (last: Node): boolean => {
    const chain = chainOf.get(last)!;
    if (chain.some((m) => headCapable(m))) return false;
    const shape = type(last.outputs[0]).shape.join();
    const reads = new Map<string, number>();
    for (const m of chain) for (const i of m.inputs) if (i) reads.set(i, (reads.get(i) ?? 0) + 1);
    for (const [v, k] of reads) {
      const p = producer.get(v);
      // A GEMM's result (through views) read several times by this chain only (GELU's input):
      // the chain becomes its epilogue, each reader using the accumulator.
      let u = v;
      while (isView(u) && !pinned.has(u)) {
        u = producer.get(u)!.inputs[0];
        if (uses.get(u) !== 1) break;
      }
      const h = producer.get(u);
      if (h && !chainOf.has(h) && headCapable(h) && k >= 2 && k === uses.get(v) && !pinned.has(v) && !pinned.has(u) && (u === v || uses.get(u) === 1) && h.phase === last.phase && sizeOf(type(u).shape) === sizeOf(type(v).shape) && type(v).shape.join() === shape) {
        const merged = [h, ...chain];
        if (inPlaceBefore[index.get(last)!] !== inPlaceBefore[index.get(h)!] || externals(g, merged) + 1 > MAX_BINDINGS) continue;
        chainOf.set(last, merged);
        return true;
      }
      const pc = p && chainOf.get(p);
      if (!pc || pc === chain || k < 2 || k !== uses.get(v) || pinned.has(v) || p!.phase !== last.phase || type(v).shape.join() !== shape) continue;
      // A chain headed by a GEMM: the reading chain becomes the rest of its epilogue (the
      // gradient of GELU's output, computed by a GEMM, never reaches memory), where the GEMM's
      // kernel can bind every input; otherwise the GEMM gives up its epilogue when its own
      // result takes no more bytes than the chain's (the f16 GEMM result, not its widened and
      // scaled f32 copy, then waits for the two readers).
      const head = headCapable(pc[0]) ? pc[0] : undefined;
      if (head && inPlaceBefore[index.get(last)!] === inPlaceBefore[index.get(head)!]) {
        const whole = [...pc, ...chain].sort((a, b) => index.get(a)! - index.get(b)!);
        if (externals(g, whole) + 1 <= MAX_BINDINGS) {
          chainOf.delete(p!);
          chainOf.set(last, whole);
          return true;
        }
      }
      const moved = head ? pc.slice(1) : pc;
      if (!moved.length || (head && byteSize(type(head.outputs[0]).dtype) > byteSize(type(v).dtype))) continue;
      if (inPlaceBefore[index.get(last)!] !== inPlaceBefore[index.get(moved[0])!]) continue;
      const merged = [...moved, ...chain].sort((a, b) => index.get(a)! - index.get(b)!);
      if (externals(g, merged) + 1 > MAX_BINDINGS) continue;
      chainOf.delete(p!);
      if (head) chainOf.set(head, [head]);
      chainOf.set(last, merged);
      return true;
    }
    return false;
  };
  for (const last of [...chainOf.keys()]) while (chainOf.has(last) && shared(last));

  // Where a unary elementwise node can be a prologue: every read of its result (through
  // views, which keep each element's flat index) is an operand that its reader's row loads
  // through a prologue, in the node's phase and with no in-place update in between. The
  // readers then load the node's input and apply its expression; its result is never stored.
  const readersOf = new Map<string, [Node, number][]>();
  for (const n of g.nodes)
    n.inputs.forEach((v, k) => {
      if (!v) return;
      const r = readersOf.get(v);
      if (r) r.push([n, k]);
      else readersOf.set(v, [[n, k]]);
    });
  const prologueReads = (p: Node): [Node, number][] | undefined => {
    const v = p.outputs[0];
    const x = p.inputs[0];
    if (!fusable(p) || p.inputs.length !== 1 || !x || !isFloat(type(x).dtype) || sizeOf(type(x).shape) !== sizeOf(type(v).shape)) return undefined;
    const reads: [Node, number][] = [];
    const visit = (u: string): boolean => {
      if (pinned.has(u)) return false;
      for (const [n, k] of readersOf.get(u) ?? []) {
        const row = opRow(n.op);
        if (row.alias?.view) {
          if (!visit(n.outputs[0])) return false;
          continue;
        }
        if (!row.prologue?.includes(k) || n.phase !== p.phase || inPlaceBefore[index.get(n)!] !== inPlaceBefore[index.get(p)!]) return false;
        // Read directly, the operand keeps the node's shape (a GEMM's strided loads).
        if (u === v && type(x).shape.join() !== type(v).shape.join()) return false;
        if (target && row.prologueWorth && !row.prologueWorth(n, k, n.inputs.map((i) => (i ? type(i) : (undefined as unknown as ValueType))), type(n.outputs[0]), target)) return false;
        reads.push([n, k]);
      }
      return true;
    };
    return visit(v) && reads.length ? reads : undefined;
  };
  // A chain ending in a widening node (a cast to f32) that can be such a prologue stores the
  // narrow value instead, and the readers widen on load: the gradient of attention's
  // probabilities leaves its GEMM as f16 for SoftmaxGrad, that of LayerNorm's output for
  // LayerNorm's three gradient kernels, not as f32.
  for (const [last, chain] of [...chainOf]) {
    if (chain.length < 2 || byteSize(type(last.outputs[0]).dtype) <= byteSize(type(last.inputs[0]).dtype) || !prologueReads(last)) continue;
    chainOf.delete(last);
    const rest = chain.slice(0, -1);
    chainOf.set(rest[rest.length - 1], rest);
  }

  const groups = new Map<Node, Node[]>();
  const absorbed = new Set<Node>();
  for (const [last, chain] of chainOf)
    if (chain.length > 1) {
      groups.set(last, chain);
      for (const m of chain) if (m !== last) absorbed.add(m);
    }

  // Prologues: a GEMM operand made by a unary elementwise node (a cast of a weight, of
  // LayerNorm's output, of attention's probabilities), a row's input made by a widening cast,
  // computed in the loads of every reader, from that node's input, instead of by a kernel.
  const prologues = new Map<Node, Map<number, Node>>();
  for (const p of g.nodes) {
    if (absorbed.has(p) || groups.has(p)) continue;
    const reads = prologueReads(p);
    if (!reads) continue;
    for (const [n, k] of reads) {
      let m = prologues.get(n);
      if (!m) prologues.set(n, (m = new Map()));
      m.set(k, p);
    }
    absorbed.add(p);
  }
  // Quantizer prologues (OpRow.loadPrologue): an fp8 quantizer with given statistics whose
  // fp8 copy and inverse scale are read only as fp8 operands (and their inverse scales) of
  // GEMMs, each at a cost the GEMM's row accepts, is computed in those GEMMs' loads. Only
  // where its input is in memory anyway (a step input or a parameter, through views, or a
  // value with other readers): one that only the quantizer reads is better quantized in the
  // store of its producer (a store tail, below), read back at a quarter of the bytes.
  const inMemory = (x: string): boolean => {
    if ((readersOf.get(x)?.length ?? 0) > 1 || pinned.has(x)) return true;
    const p = producer.get(x);
    return !p || (opRow(p.op).alias?.view === true && inMemory(p.inputs[0]));
  };
  for (const p of g.nodes) {
    const spec = opRow(p.op).loadPrologue;
    if (!spec || absorbed.has(p) || groups.has(p)) continue;
    const [q, sinv] = p.outputs;
    if (!q || !sinv || !p.inputs[0] || pinned.has(q) || pinned.has(sinv) || !inMemory(p.inputs[0])) continue;
    const own = opRow(p.op).absorbsProducer;
    const made = own && producer.get(p.inputs[own.input]);
    if (made && index.get(made)! + 1 === index.get(p) && made.phase === p.phase && own.accepts(made, p)) continue;
    const reads: [Node, number][] = [];
    const fits = (readersOf.get(q) ?? []).every(([n, k]) => {
      const row = opRow(n.op);
      const at = row.fp8?.operands.indexOf(k) ?? -1;
      if (at < 0 || !row.prologue?.includes(k) || n.inputs[row.fp8!.scaleInputs[at]] !== sinv) return false;
      if (n.phase !== p.phase || inPlaceBefore[index.get(n)!] !== inPlaceBefore[index.get(p)!] || prologues.get(n)?.has(k)) return false;
      if (target && row.prologueWorth && !row.prologueWorth(n, k, n.inputs.map((i) => (i ? type(i) : (undefined as unknown as ValueType))), type(n.outputs[0]), target)) return false;
      reads.push([n, k]);
      return true;
    });
    const scaleReads = (readersOf.get(sinv) ?? []).every(([n, k]) => reads.some(([r, j]) => r === n && opRow(n.op).fp8!.scaleInputs[opRow(n.op).fp8!.operands.indexOf(j)] === k));
    if (!fits || !scaleReads || !reads.length) continue;
    for (const [n, k] of reads) {
      let m = prologues.get(n);
      if (!m) prologues.set(n, (m = new Map()));
      m.set(k, p);
    }
    absorbed.add(p);
  }
  // Attention: a GEMM's chain (the scores: scale, mask, cast), a row-wise op along their last
  // axis (Softmax, and its chain: a cast) and a GEMM reading the row op's result as operand A,
  // each value read once (inference: training keeps or recomputes the probabilities for the
  // backward pass), become one kernel that holds its rows of scores from the first product to
  // the second (kernels/attention.ts).
  const attention = new Map<Node, Attention>();
  const lastOfHead = new Map<Node, Node>();
  for (const [last, chain] of groups) lastOfHead.set(chain[0], last);
  const unitOf = (last: Node): Node[] | undefined => groups.get(last) ?? (absorbed.has(last) ? undefined : [last]);
  const unitHeadedBy = (head: Node): Node[] | undefined => {
    const last = lastOfHead.get(head);
    return last ? groups.get(last) : absorbed.has(head) ? undefined : [head];
  };
  for (const n of target ? g.nodes : []) {
    if (!opRow(n.op).gemm) continue;
    const out = unitHeadedBy(n);
    const pro = prologues.get(n)?.get(0);
    if (!out || (pro && (uses.get(pro.outputs[0]) !== 1 || n.inputs[0] !== pro.outputs[0]))) continue;
    const t2 = through(pro ? pro.inputs[0] : n.inputs[0]);
    const row = t2 && unitOf(t2.p);
    const rowOp = row && opRow(row[0].op).rows;
    if (!row || !rowOp || prologues.has(row[0]) || !rowOp.lastAxis(row[0], type(row[0].inputs[0]).shape)) continue;
    const t1 = through(row[0].inputs[0]);
    const scores = t1 && unitOf(t1.p);
    if (!scores || !opRow(scores[0].op).gemm) continue;
    const nodes = [...scores, ...row, ...out];
    const last = out[out.length - 1];
    if (nodes.some((m) => m.phase !== n.phase) || inPlaceBefore[index.get(scores[0])!] !== inPlaceBefore[index.get(last)!]) continue;
    const pros = [scores[0], n].flatMap((m) => [...(prologues.get(m)?.values() ?? [])]);
    if (externals(g, [...nodes, ...pros]) + 1 > MAX_BINDINGS) continue;
    const att = { scores, row, out };
    if (whyNotOneKernel(g, att, target!, prologues)) continue;
    attention.set(last, att);
    for (const u of [scores, row, out]) groups.delete(u[u.length - 1]);
    for (const m of nodes) if (m !== last) absorbed.add(m);
  }

  // A row that computes the producer of one of its inputs as well (the fp8 quantizer and its
  // statistics): the producer runs right before it and is not otherwise fused.
  const producerOf = new Map<Node, Node>();
  for (const n of g.nodes) {
    const spec = opRow(n.op).absorbsProducer;
    if (!spec || absorbed.has(n) || groups.has(n) || prologues.has(n)) continue;
    const p = producer.get(n.inputs[spec.input]);
    if (!p || absorbed.has(p) || groups.has(p) || prologues.has(p) || p.phase !== n.phase || index.get(p)! + 1 !== index.get(n)) continue;
    if (!spec.accepts(p, n)) continue;
    producerOf.set(n, p);
    absorbed.add(p);
  }
  // Store tails (the fp8 quantizer and the statistics it absorbed): a row whose input is read
  // by nothing else is computed in the store of the kernel producing that input (through
  // views): an elementwise chain, or a node that fusion could head or chain, built on the map
  // and row kernels. That kernel stores the row's output instead of the input, which never
  // reaches memory.
  const tails = new Map<Node, Tail>();
  for (const n of g.nodes) {
    const spec = opRow(n.op).storeTail;
    if (!spec || absorbed.has(n) || groups.has(n) || prologues.has(n)) continue;
    const inner = producerOf.get(n);
    const x = n.inputs[spec.input];
    if (!x || pinned.has(x) || !spec.accepts(n, inner)) continue;
    const readers = readersOf.get(x) ?? [];
    if (readers.length !== (inner ? 2 : 1) || readers.some(([r]) => r !== n && r !== inner)) continue;
    let v = x;
    let p = producer.get(v);
    while (p && opRow(p.op).alias?.view) {
      v = p.inputs[0];
      p = pinned.has(v) || uses.get(v) !== 1 ? undefined : producer.get(v);
    }
    if (!p || tails.has(p) || attention.has(p) || p.phase !== n.phase || inPlaceBefore[index.get(p)!] !== inPlaceBefore[index.get(n)!]) continue;
    const unit = groups.get(p) ?? (!absorbed.has(p) && (fusable(p) || headCapable(p)) ? [p] : undefined);
    // Not after a GEMM: its fp8-output tile ran slower on lavapipe than its own store plus a
    // quantize kernel (and its end is not uniform control flow for the statistics' barrier).
    if (!unit || unit.some((m) => opRow(m.op).gemm) || sizeOf(type(v).shape) !== sizeOf(type(x).shape)) continue;
    // The tail binds its output and two more (the scale and the statistics, or the
    // statistics and the inverse scale).
    if (externals(g, unit) + 3 > MAX_BINDINGS) continue;
    tails.set(p, { node: n, ...(inner ? { absorbed: inner } : {}) });
    absorbed.add(n);
    producerOf.delete(n);
  }
  return { groups, absorbed, prologues, producerOf, attention, tails };
}

/** The three products' options and the row op, as `attentionKernel` renders them into `w`. */
function attentionOptions(g: Graph, att: Attention, w: KernelWriter, target: Target, prologues: Map<Node, Map<number, Node>>): AttentionOptions {
  const type = (v: string): ValueType => {
    const val = g.values.get(v)!;
    return { dtype: val.dtype, shape: staticShape(val) };
  };
  const epilogueOf = (unit: Node[], fn: string) => (unit.length > 1 ? chainEpilogue(g, unit[0], unit.slice(1), type, fn) : undefined);
  const options = (unit: Node[], fn: string) =>
    opRow(unit[0].op).gemm!(unit[0], { target, type, writer: () => w, epilogue: epilogueOf(unit, fn), prologue: prologueCtx(g, prologues.get(unit[0])) });
  const head = att.row[0];
  const rows = opRow(head.op).rows!;
  return {
    scores: options(att.scores, 'epilogue_scores'),
    row: { body: (w2, len, at) => rows.body(head, w2, len, at), dtype: type(head.outputs[0]).dtype, epilogue: epilogueOf(att.row, 'epilogue_rows') },
    out: options(att.out, 'epilogue'),
  };
}

/** Why an attention pattern cannot be one kernel (its layouts), or undefined. */
function whyNotOneKernel(g: Graph, att: Attention, target: Target, prologues: Map<Node, Map<number, Node>>): string | undefined {
  return attentionUnfit(attentionOptions(g, att, new KernelWriter('probe', target), target, prologues));
}

/** The kernel of an attention pattern (see `FusionPlan.attention`). */
export function attentionKernel(g: Graph, att: Attention, name: string, target: Target, prologues: Map<Node, Map<number, Node>>): Kernel {
  const w = new KernelWriter(name, target);
  return emitAttention(w, attentionOptions(g, att, w, target, prologues));
}

/** The prologues of a GEMM, as its emitter reads them (EmitCtx.prologue). */
export function prologueCtx(g: Graph, folded: Map<number, Node> | undefined): Record<number, Prologue> | undefined {
  if (!folded) return undefined;
  const type = (v: string): ValueType => {
    const val = g.values.get(v)!;
    return { dtype: val.dtype, shape: staticShape(val) };
  };
  const out: Record<number, Prologue> = {};
  for (const [k, p] of folded) {
    const x = p.inputs[0];
    const t = type(p.outputs[0]);
    const spec = opRow(p.op).loadPrologue;
    if (spec) {
      out[k] = { buffer: x, dtype: type(x).dtype, apply: (w, v) => spec.apply(p, w, v), scale: (w) => spec.scale(p, w) };
      continue;
    }
    out[k] = {
      buffer: x,
      dtype: type(x).dtype,
      // Rounded to the node's dtype, as the unfused program stored it.
      apply: (w, v) => w.round(t.dtype, opRow(p.op).expr!(p, w, [type(x)], t)(`(${v})`)),
    };
  }
  return out;
}

const viewCache = new WeakMap<Node[], Map<string, string>>();
/** The output of each view -> the value it views. */
function viewsOf(g: Graph): Map<string, string> {
  let m = viewCache.get(g.nodes);
  if (!m) {
    m = new Map();
    for (const n of g.nodes) if (opRow(n.op).alias?.view && n.outputs[0] && n.inputs[0]) m.set(n.outputs[0], n.inputs[0]);
    viewCache.set(g.nodes, m);
  }
  return m;
}

/** Attributes as text, a tensor attribute by its contents. */
export function attrsText(attrs: Node['attrs']): string {
  return JSON.stringify(attrs, (_k, v) => (v && typeof v === 'object' && 'data' in v && 'dtype' in v ? Array.from((v as { data: ArrayLike<number> }).data) : v));
}

/**
 * What the kernel of a fusion group (a chain, or an attention pattern's three units) depends
 * on, with its values renamed by first appearance: each node's op, attributes and values (its
 * folded prologues first), and each value's type, scalar literal and the value it views. Two
 * groups with the same key have the same kernel, its bindings renamed position by position
 * through `values`. (Tests regenerate every reused kernel and compare: see program.ts.)
 */
export function fusionKey(g: Graph, units: Node[][], prologues: Map<Node, Map<number, Node>> | undefined): { key: string; values: string[] } {
  const views = viewsOf(g);
  const ids = new Map<string, number>();
  const values: string[] = [];
  const parts: string[] = [];
  const id = (v: string): string => {
    if (!v) return '-';
    let i = ids.get(v);
    if (i === undefined) {
      i = values.length;
      ids.set(v, i);
      values.push(v);
      const val = g.values.get(v)!;
      const src = views.get(v);
      parts.push(`v${i}:${val.dtype}[${staticShape(val)}]${literalOf(g, v) ?? ''}${src ? `<${id(src)}` : ''}`);
    }
    return `v${i}`;
  };
  const node = (n: Node) => `${n.op}${attrsText(n.attrs)}(${n.inputs.map(id).join(',')})${n.outputs.map(id).join(',')}`;
  for (const unit of units) {
    parts.push('|');
    for (const n of unit) {
      for (const [k, p] of [...(prologues?.get(n) ?? [])].sort((a, b) => a[0] - b[0])) parts.push(`${k}<${node(p)}`);
      parts.push(node(n));
    }
  }
  return { key: parts.join(' '), values };
}

/** Distinct values a chain reads from memory (a view of a chain value or a scalar constant is not one). */
function externals(g: Graph, chain: Node[]): number {
  const inside = new Set(chain.flatMap((n) => n.outputs));
  const views = viewsOf(g);
  const inner = (v: string): boolean => inside.has(v) || (views.has(v) && inner(views.get(v)!));
  return new Set(chain.flatMap((n) => n.inputs.filter((i) => i && !inner(i) && literalOf(g, i) === undefined))).size;
}

/**
 * A scalar floating-point constant as a WGSL literal of the value its buffer holds (rounded
 * to its dtype): a fused kernel reads it without a binding. Same number, so same results.
 */
function literalOf(g: Graph, v: string): string | undefined {
  const val = g.values.get(v);
  if (!val || val.role !== 'const' || !val.init || !isFloat(val.dtype) || val.init.data.length !== 1) return undefined;
  const x = round(val.dtype, val.init.data[0]);
  return Number.isFinite(x) && !Object.is(x, -0) ? f32Lit(x) : undefined;
}

/**
 * The kernels of one chain: every value of it per output element, the last one stored. A
 * chain headed by a kernel with an epilogue (a GEMM) is that kernel, storing the chain's
 * value. With a store tail (a chain, or one node) the kernel stores the tail's output instead
 * (and names the buffers the tail needs cleared), and the tail's own kernels follow.
 */
export function fusedKernels(g: Graph, chain: Node[], name: string, target: Target, prologue?: Record<number, Prologue>, tail?: Tail): Kernel[] {
  const type = (v: string): ValueType => {
    const val = g.values.get(v)!;
    return { dtype: val.dtype, shape: staticShape(val) };
  };
  const tailCtx: EmitCtx = { target, type, writer: (suffix) => new KernelWriter(`${name}${suffix ? `.${suffix}` : ''}`, target) };
  const st = tail && opRow(tail.node.op).storeTail!.tail(tail.node, tail.absorbed, tailCtx);
  const withTail = (k: Kernel): Kernel[] => (st ? [{ ...k, ...(st.clear ? { clear: [...(k.clear ?? []), ...st.clear] } : {}) }, ...st.after] : [k]);
  const last = chain[chain.length - 1];
  const head = chain.find((n) => opRow(n.op).epilogue);
  if (head) return withTail(epilogueKernel(g, head, chain.filter((n) => n !== head), name, target, type, prologue, st));
  const out = type(last.outputs[0]);
  const w = new KernelWriter(name, target);
  if (st) w.epilogue = { replaces: last.outputs[0], out: st.out, apply: st.apply };
  const local = new Map<string, string>(); // a chain value (or a view of one), or an input at a shape -> its register
  const views = viewsOf(g);
  // A chain value seen through views: every element at the same flat index.
  const inner = (v: string): string | undefined => {
    const id = local.get(v);
    if (id !== undefined) return id;
    const view = views.get(v);
    return view ? inner(view) : undefined;
  };
  const lines: string[] = [];
  chain.forEach((n, k) => {
    const at = type(n.outputs[0]).shape;
    const args = n.inputs.map((v) => {
      if (!v) return '';
      const mine = inner(v);
      if (mine !== undefined) return mine;
      // An input, broadcast to the shape of the node that reads it.
      const t = type(v);
      const key = `${v}|${at.join()}`;
      let id = local.get(key);
      if (id === undefined) {
        id = `x${local.size}`;
        lines.push(`let ${id} = ${literalOf(g, v) ?? w.load(w.bind(v, t.dtype, 'read'), broadcastIndex(at, t.shape, 'i'))};`);
        local.set(key, id);
      }
      return id;
    });
    const t = type(n.outputs[0]);
    const e = opRow(n.op).expr!(n, w, n.inputs.map((v) => (v ? type(v) : (undefined as unknown as ValueType))), t)(...args);
    if (n === last) lines.push(`return ${e};`);
    else {
      // Rounded to its dtype exactly where the unfused program stored it.
      const id = `t${k}`;
      lines.push(`let ${id} = ${w.round(t.dtype, e)};`);
      local.set(n.outputs[0], id);
    }
  });
  return withTail(mapKernel(w, { out: last.outputs[0], outDtype: out.dtype, count: sizeOf(out.shape), compute: lines.join('\n') }));
}

/**
 * The head's own kernel with the rest of the chain as its epilogue. Inner values are rounded
 * to their dtypes as stored by the unfused program, external inputs are read at the element's
 * (broadcast) index, and views between the head and the chain are index-preserving. A chain
 * of single readers is one nested expression; one with a value read several times (GELU's
 * backward pass reads its scaled output gradient twice) becomes a helper function of the
 * kernel, each value a `let` computed once per element.
 */
function epilogueKernel(g: Graph, head: Node, rest: Node[], name: string, target: Target, type: (v: string) => ValueType, prologue?: Record<number, Prologue>, tail?: StoreTail): Kernel {
  const chain = rest.length ? chainEpilogue(g, head, rest, type, 'epilogue') : undefined;
  // A store tail takes the chain's value (or the head's), rounded to its dtype as stored unfused.
  const lastType = type((rest.length ? rest[rest.length - 1] : head).outputs[0]);
  const epilogue: Epilogue = tail
    ? { out: tail.out, apply: (w, v, idx) => tail.apply(w, chain ? w.round(lastType.dtype, chain.apply(w, v, idx)) : v, idx) }
    : chain!;
  let count = 0;
  // GEMM rows read the epilogue from the context; rows built on mapKernel from their writer.
  const ctx: EmitCtx = {
    target,
    type,
    writer: (suffix) => {
      const w = new KernelWriter(`${name}${suffix ? `.${suffix}` : count++ ? `.${count}` : ''}`, target);
      w.epilogue = { replaces: head.outputs[0], ...epilogue };
      return w;
    },
    epilogue,
    prologue,
  };
  const kernels = opRow(head.op).wgsl!(head, ctx);
  if (kernels.length !== 1) throw new Error(`fusion: ${head.op} '${head.name}' declares an epilogue but emits ${kernels.length} kernels`);
  return kernels[0];
}

/** The rest of a chain as the epilogue of its head (`fn`: the name of its helper function, where it needs one). */
function chainEpilogue(g: Graph, head: Node, rest: Node[], type: (v: string) => ValueType, fn: string): Epilogue {
  const last = rest[rest.length - 1];
  const out = type(last.outputs[0]);
  const producerIn = new Map<string, Node>();
  for (const n of rest) producerIn.set(n.outputs[0], n);
  // A chain value seen through views.
  const views = viewsOf(g);
  // A value the chain reads from the head, possibly through views.
  const viewOfHead = (v: string): boolean => v === head.outputs[0] || (views.has(v) && viewOfHead(views.get(v)!));
  const inner = (x: string): string | undefined => (producerIn.has(x) ? x : views.has(x) ? inner(views.get(x)!) : undefined);
  const fromHead = new Map<string, boolean>();
  const isHead = (v: string) => {
    let r = fromHead.get(v);
    if (r === undefined) fromHead.set(v, (r = !producerIn.has(v) && viewOfHead(v)));
    return r;
  };
  const readers = new Map<string, number>();
  for (const n of rest) for (const i of n.inputs) if (i && inner(i)) readers.set(inner(i)!, (readers.get(inner(i)!) ?? 0) + 1);
  const shared = [...readers.values()].some((k) => k > 1);
  // The value of chain value `x` read by a node of shape `at`: the head's `v`, a register
  // (`regs`, in the helper function) or its nested expression; an input loaded at `idx`.
  const valueOf = (w: KernelWriter, v: string, idx: string, regs?: Map<string, string>) => {
    const value = (x: string, at: number[]): string => {
      if (isHead(x)) return `(${v})`;
      const own = inner(x) ?? x;
      const reg = regs?.get(own);
      if (reg) return reg;
      const n = producerIn.get(own);
      if (!n) {
        const t = type(x);
        return literalOf(g, x) ?? w.load(w.bind(x, t.dtype, 'read'), broadcastIndex(at, t.shape, `(${idx})`));
      }
      return `(${expr(n)})`;
    };
    const expr = (n: Node): string => {
      const t = type(n.outputs[0]);
      const e = opRow(n.op).expr!(n, w, n.inputs.map((i) => (i ? type(i) : (undefined as unknown as ValueType))), t)(...n.inputs.map((i) => (i ? value(i, t.shape) : '')));
      return n === last ? e : w.round(t.dtype, e);
    };
    return { value, expr };
  };
  const defined = new WeakSet<KernelWriter>();
  const epilogue: Epilogue = {
    out: { buffer: last.outputs[0], dtype: out.dtype },
    apply: (w, v, idx) => {
      // Every operand is parenthesized: a row's expression may put it next to an operator.
      if (!shared) return `(${valueOf(w, v, idx).value(last.outputs[0], out.shape)})`;
      if (!defined.has(w)) {
        defined.add(w);
        const regs = new Map<string, string>();
        const { expr } = valueOf(w, 'v', 'i', regs);
        const lines = rest.map((n, k) => {
          if (n === last) return `  return ${expr(n)};`;
          const line = `  let e${k} = ${expr(n)};`;
          regs.set(n.outputs[0], `e${k}`);
          return line;
        });
        w.define(`fn ${fn}(v: f32, i: u32) -> f32 {\n${lines.join('\n')}\n}\n`);
      }
      return `${fn}(${v}, ${idx})`;
    },
  };
  return epilogue;
}
