// Codegen: lowered IR (a training step graph and an inference graph) → WGSL kernels, the
// buffer list and the dispatch schedules (program.json).
//
// Buffers: one per value, except that views (Reshape, Flatten...) and in-place updates
// (optimizer, loss scaler) share their input's buffer. The two graphs never run at the same
// time, so a value with the same name, dtype and shape in both uses one buffer. Buffers are
// logical: the memory planner (memory-plan.ts) then places them in device allocations, where
// buffers whose lifetimes do not overlap share bytes.
import type { DType } from '../ir/dtypes.js';
import { staticShape, type Graph, type Node, type ValueRole } from '../ir/graph.js';
import { sizeOf } from '../ir/tensor.js';
import { opRow } from '../ops/table.js';
import type { EmitCtx } from '../ops/types.js';
import { dispatch1d, type Kernel, type Target } from './kernel.js';
import { bufferBytes, KernelWriter, layoutOf, MAP_WORKGROUP, type Layout } from './storage.js';
import { peakLive, planMemory } from './memory-plan.js';
import { attentionKernel, attrsText, fusedKernels, fusionKey, planFusion, prologueCtx } from './fuse.js';
import { VERIFY_EACH } from '../ir/verify.js';

export interface ProgramBuffer {
  name: string;
  dtype: DType;
  shape: number[];
  layout: Pick<Layout, 'elem' | 'perWord'>;
  bytes: number;
  role: ValueRole;
  /** Device allocation holding this buffer (index into CodegenResult.allocations). */
  alloc: number;
  /** Byte offset of the buffer in its allocation (a multiple of 256; absent: 0). */
  offset?: number;
}

export interface ProgramKernel {
  name: string;
  /** File under kernels/ holding the WGSL (identical kernels share a file). */
  file: string;
  workgroupSize: [number, number, number];
  dispatch: [number, number, number];
  /** Buffer index and access of each binding, in binding order. */
  bindings: { buffer: number; access: 'read' | 'read_write' }[];
  /** The IR node it implements (for profiles and error messages). */
  node: string;
  /** A fused kernel: every node it computes, in order (`node` is the last). */
  fused?: string[];
}

export interface Schedule {
  kernels: number[];
  /** Graph input name → buffer index. */
  inputs: Record<string, number>;
  /**
   * Graph output name → buffer index: the outputs the host reads after a run. They hold their
   * values until the next run of any schedule (read them before running another).
   */
  outputs: Record<string, number>;
  /** Buffers the runtime zeroes at the start of every run, before the first kernel (Kernel.clear). */
  clear?: number[];
}

export interface CodegenResult {
  buffers: ProgramBuffer[];
  kernels: ProgramKernel[];
  /** file name → WGSL text */
  files: Map<string, string>;
  schedules: Record<string, Schedule>;
  /** value name → buffer index, for every value of every graph */
  bufferOf: Record<string, Record<string, number>>;
  /** Bytes of each device allocation (buffers share them where their lifetimes allow). */
  allocations: number[];
  memory: MemoryReport;
}

/** What the memory plan bought, for compile's summary and the manifest. */
export interface MemoryReport {
  /** Bytes of the allocations holding activations, planned, and with one allocation per buffer. */
  activation: { planned: number; unplanned: number };
  /**
   * The training step ('train' schedule): bytes of the values the forward pass keeps for the
   * backward pass; the peak of all simultaneously live transient bytes; the parameters'
   * gradients (all live when the optimizer runs); and the peak without them (activations and
   * workspace: what compares with the tensors an autograd engine saves).
   */
  train?: { saved: number; peak: number; gradients: number; peakWithoutGradients: number };
}

export interface GenerateOptions {
  /** Per graph: values the host reads at any time, beyond the graph's inputs and outputs (kept across runs). */
  keep?: Record<string, string[]>;
  /** false: one allocation per buffer (no sharing), for comparisons and debugging. */
  share?: boolean;
  /** false: one kernel per node (no elementwise fusion), for comparisons and debugging. */
  fuse?: boolean;
  /** The parameters' gradients in the 'train' graph (for the memory report). */
  gradients?: string[];
}

class UnionFind {
  private parent = new Map<string, string>();
  find(x: string): string {
    let p = this.parent.get(x) ?? x;
    if (p !== x) {
      p = this.find(p);
      this.parent.set(x, p);
    }
    return p;
  }
  union(child: string, root: string): void {
    this.parent.set(this.find(child), this.find(root));
  }
}

/** Which values share a buffer within one graph; checks in-place updates are safe. */
function aliasClasses(g: Graph): UnionFind {
  const uf = new UnionFind();
  const lastRead = new Map<string, number>(); // value -> position of the last node reading it
  g.nodes.forEach((n, idx) => n.inputs.forEach((v) => lastRead.set(v, idx)));
  g.nodes.forEach((n, idx) => {
    const alias = opRow(n.op).alias;
    if (!alias) return;
    for (const [o, i] of alias.pairs) {
      if (!n.outputs[o] || !n.inputs[i]) continue;
      if (!alias.view) {
        // In place: nobody may read the old contents after this node.
        const late = (lastRead.get(n.inputs[i]) ?? -1) > idx ? g.nodes[lastRead.get(n.inputs[i])!] : undefined;
        if (late) throw new Error(`in-place update '${n.name}' overwrites '${n.inputs[i]}', which '${late.name}' still reads`);
      }
      uf.union(n.outputs[o], n.inputs[i]);
    }
  });
  return uf;
}

export function generate(graphs: Record<string, Graph>, target: Target, opts: GenerateOptions = {}): CodegenResult {
  const buffers: ProgramBuffer[] = [];
  const byKey = new Map<string, number>(); // `${root}|${dtype}|${shape}` -> buffer
  const bufferOf: Record<string, Record<string, number>> = {};

  for (const [gname, g] of Object.entries(graphs)) {
    const uf = aliasClasses(g);
    const map: Record<string, number> = {};
    // Roots first, so that a view gets its root's buffer.
    for (const v of g.values.values()) {
      const root = uf.find(v.name);
      const rv = g.values.get(root)!;
      const shape = staticShape(rv);
      const key = `${root}|${rv.dtype}|${shape.join('x')}`;
      let b = byKey.get(key);
      if (b === undefined) {
        const layout = layoutOf(rv.dtype, target);
        b = buffers.length;
        buffers.push({ name: root, dtype: rv.dtype, shape, layout: { elem: layout.elem, perWord: layout.perWord }, bytes: bufferBytes(layout, sizeOf(shape)), role: rv.role, alloc: -1 });
        byKey.set(key, b);
      }
      map[v.name] = b;
    }
    bufferOf[gname] = map;
  }

  const kernels: ProgramKernel[] = [];
  const files = new Map<string, string>();
  // Kernels depend only on a node's op, attributes and value types, never on value names:
  // identical layers are emitted once and the kernels rebound to each node's values.
  const emitted = new Map<string, Emitted>();
  const fileOf = new Map<string, string>(); // wgsl -> file
  const schedules: Record<string, Schedule> = {};
  // Fused kernels likewise, by fusionKey: a group's kernel is made once and renamed.
  const groups = new Map<string, { kernels: Kernel[]; values: string[]; prefix: string }>();
  const groupKernels = (g: Graph, units: Node[][], folded: Map<Node, Map<number, Node>> | undefined, prefix: string, make: () => Kernel[]): Kernel[] => {
    const { key, values } = fusionKey(g, units, folded);
    const hit = groups.get(key);
    if (!hit) {
      const made = make();
      const own = new Set(values);
      if (made.every((k) => k.bindings.every((b) => own.has(b.name)))) groups.set(key, { kernels: made, values, prefix });
      return made;
    }
    const to = new Map(hit.values.map((v, i) => [v, values[i]]));
    const kernels = hit.kernels.map((k) => ({
      ...k,
      name: k.name.startsWith(hit.prefix) ? prefix + k.name.slice(hit.prefix.length) : k.name,
      bindings: k.bindings.map((b) => ({ ...b, name: to.get(b.name)! })),
      ...(k.clear ? { clear: k.clear.map((b) => to.get(b)!) } : {}),
    }));
    if (VERIFY_EACH) {
      const made = make();
      if (JSON.stringify(made) !== JSON.stringify(kernels)) throw new Error(`fused kernel ${prefix} differs from the one reused for its key ${key}`);
    }
    return kernels;
  };
  let clears = new Set<number>(); // the schedule being generated: buffers zeroed at its start
  let written = new Set<number>(); // ... and the buffers its kernels so far write
  const add = (k: Kernel, map: Record<string, number>, node: string, fused?: string[]): number => {
    let file = fileOf.get(k.wgsl);
    if (!file) {
      file = `${String(files.size).padStart(3, '0')}_${k.name.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 60)}.wgsl`;
      files.set(file, k.wgsl);
      fileOf.set(k.wgsl, file);
    }
    const bindings = k.bindings.map((b) => {
      const idx = map[b.name];
      if (idx === undefined) throw new Error(`kernel ${k.name} binds unknown value '${b.name}'`);
      return { buffer: idx, access: b.access };
    });
    for (const name of k.clear ?? []) {
      const b = map[name];
      if (b === undefined || written.has(b)) throw new Error(`kernel ${k.name} needs '${name}' zeroed at the start, but ${b === undefined ? 'it is unknown' : 'an earlier kernel writes it'}`);
      clears.add(b);
    }
    for (const b of bindings) if (b.access === 'read_write') written.add(b.buffer);
    kernels.push({ name: k.name, file, workgroupSize: k.workgroupSize, dispatch: k.dispatch, bindings, node, ...(fused ? { fused } : {}) });
    return kernels.length - 1;
  };

  for (const [gname, g] of Object.entries(graphs)) {
    const map = bufferOf[gname];
    const list: number[] = [];
    clears = new Set();
    written = new Set();
    const type = (v: string) => {
      const val = g.values.get(v);
      if (!val) throw new Error(`unknown value '${v}'`);
      return { dtype: val.dtype, shape: staticShape(val) };
    };
    // Values that must reach memory: what the host reads or writes, and next step's state.
    const pinned = new Set([...g.inputs, ...g.outputs, ...(opts.keep?.[gname] ?? []), ...g.updates.flatMap((u) => [u.state, u.next])]);
    const fusion = opts.fuse === false ? undefined : planFusion(g, pinned, target);
    for (const n of g.nodes) {
      const row = opRow(n.op);
      if (row.alias?.view) continue; // a view: same buffer, no kernel
      if (fusion?.absorbed.has(n)) continue; // computed in a later node's kernel
      const chain = fusion?.groups.get(n);
      const folded = fusion?.prologues;
      const att = fusion?.attention.get(n);
      if (att) {
        const units = [att.scores, att.row, att.out];
        const names = units.flat().flatMap((m) => [...(folded?.get(m)?.values() ?? [])].map((p) => p.name).concat(m.name));
        const prefix = `${gname}.${n.name}.attention`;
        for (const k of groupKernels(g, units, folded, prefix, () => [attentionKernel(g, att, prefix, target, folded!)])) list.push(add(k, map, n.name, names));
        continue;
      }
      // A chain, or a node whose result is stored through a tail (the fp8 quantizer).
      const tail = fusion?.tails.get(n);
      if (chain || tail) {
        const unit = chain ?? [n];
        const head = unit.find((m) => folded?.has(m));
        const tailNodes = tail ? (tail.absorbed ? [tail.absorbed, tail.node] : [tail.node]) : [];
        const names = unit.flatMap((m) => [...(folded?.get(m)?.values() ?? [])].map((p) => p.name).concat(m.name)).concat(tailNodes.map((m) => m.name));
        const prefix = `${gname}.${n.name}.fused`;
        const units = tail ? [unit, tailNodes] : [unit];
        for (const k of groupKernels(g, units, folded, prefix, () => fusedKernels(g, unit, prefix, target, head && prologueCtx(g, folded!.get(head)), tail))) list.push(add(k, map, n.name, names));
        continue;
      }
      if (!row.wgsl) throw new Error(`no WGSL emitter for ${n.op} (node '${n.name}')`);
      const prefix = `${gname}.${n.name}`;
      const pro = fusion?.prologues.get(n);
      const inner = fusion?.producerOf.get(n);
      const extra = extraValues(pro, n, inner);
      const key = emitKey(n, type, pro, inner);
      let made = emitted.get(key);
      if (!made) {
        let count = 0;
        const ctx: EmitCtx = {
          target,
          type,
          writer: (suffix) => new KernelWriter(`${prefix}${suffix ? `.${suffix}` : count++ ? `.${count}` : ''}`, target),
          prologue: prologueCtx(g, pro),
        };
        made = { node: n, prefix, kernels: inner ? row.absorbsProducer!.wgsl(inner, n, ctx) : row.wgsl(n, ctx), extra };
        // Reusable when every binding is one of the node's own values (then it maps by position).
        const own = new Set([...n.inputs, ...n.outputs, ...made.extra]);
        if (made.kernels.every((k) => k.bindings.every((b) => own.has(b.name)))) emitted.set(key, made);
      }
      const fusedNames = pro || inner ? [...(pro?.values() ?? [])].map((p) => p.name).concat(inner ? [inner.name] : [], n.name) : undefined;
      for (const k of made.node === n ? made.kernels : rebind(made, n, prefix, extra)) list.push(add(k, map, n.name, fusedNames));
    }
    // State updates that did not happen in place get a copy at the end of the step.
    for (const u of g.updates) {
      if (map[u.state] === map[u.next]) continue;
      list.push(add(copyKernel(u.next, u.state, g.values.get(u.state)!.dtype, sizeOf(staticShape(g.values.get(u.state)!)), target), map, `update ${u.state}`));
    }
    const io = (names: string[]) => Object.fromEntries(names.map((v) => [v, map[v]]));
    schedules[gname] = { kernels: list, inputs: io(g.inputs), outputs: io(g.outputs), ...(clears.size ? { clear: [...clears] } : {}) };
  }

  const keep = new Set<number>();
  const until = new Map<number, string[]>(); // output buffer -> schedules it must survive to the end of
  for (const [gname, g] of Object.entries(graphs)) {
    const bufferNamed = (v: string) => {
      const b = bufferOf[gname][v];
      if (b === undefined) throw new Error(`cannot keep unknown value '${v}' of graph ${gname}`);
      return b;
    };
    for (const v of [...g.inputs, ...(opts.keep?.[gname] ?? [])]) keep.add(bufferNamed(v));
    for (const v of g.outputs) {
      const b = bufferNamed(v);
      until.set(b, [...(until.get(b) ?? []), gname]);
    }
  }
  const lists = Object.fromEntries(Object.entries(schedules).map(([k, s]) => [k, s.kernels]));
  // A buffer cleared when a schedule starts holds its zeros from then on.
  const from = new Map<number, string[]>();
  for (const [gname, s] of Object.entries(schedules)) for (const b of s.clear ?? []) from.set(b, [...(from.get(b) ?? []), gname]);
  const plan = planMemory(buffers, kernels, lists, keep, { share: opts.share, untilEnd: until, fromStart: from });
  buffers.forEach((b, i) => {
    b.alloc = plan.allocOf[i];
    b.offset = plan.offsetOf[i];
  });
  const activationAllocs = new Set(buffers.filter((b) => b.role === 'activation' && b.alloc >= 0).map((b) => b.alloc));
  const memory: MemoryReport = {
    activation: {
      planned: [...activationAllocs].reduce((s, a) => s + plan.allocations[a], 0),
      unplanned: buffers.reduce((s, b) => s + (b.role === 'activation' ? b.bytes : 0), 0),
    },
  };
  const train = graphs.train && schedules.train;
  if (train) {
    // Saved for the backward pass: live across the first kernel of a gradient node.
    const phase = new Map(graphs.train.nodes.map((n) => [n.name, n.phase]));
    const boundary = train.kernels.findIndex((k) => phase.get(kernels[k].node) === 'backward');
    const saved =
      boundary < 0
        ? 0
        : [...plan.lifetimes].reduce((s, [b, ls]) => s + (!plan.pinned[b] && ls.some((l) => l.schedule === 'train' && l.first < boundary && l.last >= boundary) ? buffers[b].bytes : 0), 0);
    const grads = new Set((opts.gradients ?? []).map((v) => bufferOf.train[v]));
    memory.train = {
      saved,
      peak: peakLive(plan, buffers, 'train', train.kernels.length).bytes,
      gradients: [...grads].reduce((s, b) => s + buffers[b].bytes, 0),
      peakWithoutGradients: peakLive(plan, buffers, 'train', train.kernels.length, (b) => !grads.has(b)).bytes,
    };
  }
  return { buffers, kernels, files, schedules, bufferOf, allocations: plan.allocations, memory };
}

interface Emitted {
  node: Node;
  prefix: string;
  kernels: Kernel[];
  /** Values bound beyond the node's own: the inputs of its fused prologues, by operand, then those of an absorbed producer. */
  extra: string[];
}

/** The inputs of a node's fused prologues, in operand order, then the other inputs of the producer it absorbs. */
function extraValues(pro: Map<number, Node> | undefined, n?: Node, inner?: Node): string[] {
  const own = new Set(n ? [...n.inputs, ...n.outputs] : []);
  return [
    ...(pro ? [...pro].sort((a, b) => a[0] - b[0]).flatMap(([, p]) => p.inputs) : []),
    ...(inner ? inner.inputs.filter((v) => v && !own.has(v)) : []),
  ];
}

/**
 * What a node's kernels depend on: op, attributes, the types of its values and which of them
 * coincide, its fused prologues (their ops, attributes and input types) and the producer it
 * absorbs (its op and attributes).
 */
function emitKey(n: Node, type: (v: string) => { dtype: DType; shape: number[] }, pro?: Map<number, Node>, inner?: Node): string {
  const prologue = pro
    ? [...pro]
        .sort((a, b) => a[0] - b[0])
        .map(([k, p]) => `${k}:${p.op}${JSON.stringify(p.attrs)}:${p.inputs.map((v) => type(v).dtype)}`)
        .join(';')
    : '';
  const absorbed = inner ? `|${inner.op}${JSON.stringify(inner.attrs)}:${inner.inputs.map((v) => n.inputs.indexOf(v)).join(',')}` : '';
  const vals = [...n.inputs, ...n.outputs, ...extraValues(pro, n, inner)];
  const sig = vals.map((v, i) => (v ? `${vals.indexOf(v) === i ? '' : `=${vals.indexOf(v)}`}${type(v).dtype}[${type(v).shape}]` : '-'));
  return `${n.op}|${n.inputs.length}|${attrsText(n.attrs)}|${sig.join(',')}|${prologue}${absorbed}`;
}

/** The kernels emitted for `from.node`, bound to the same-position values of `n`. */
function rebind(from: Emitted, n: Node, prefix: string, extra: string[]): Kernel[] {
  const to = new Map<string, string>();
  from.node.inputs.forEach((v, i) => v && to.set(v, n.inputs[i]));
  from.node.outputs.forEach((v, i) => v && to.set(v, n.outputs[i]));
  from.extra.forEach((v, i) => to.set(v, extra[i]));
  return from.kernels.map((k) => ({
    ...k,
    name: k.name.startsWith(from.prefix) ? prefix + k.name.slice(from.prefix.length) : k.name,
    bindings: k.bindings.map((b) => ({ ...b, name: to.get(b.name)! })),
    ...(k.clear ? { clear: k.clear.map((b) => to.get(b)!) } : {}),
  }));
}

/** Word-by-word copy between two buffers of the same layout. */
function copyKernel(from: string, to: string, dtype: DType, count: number, target: Target): Kernel {
  const w = new KernelWriter(`copy.${to}`, target);
  const layout = layoutOf(dtype, target);
  const src = w.bind(from, dtype, 'read');
  const dst = w.bind(to, dtype, 'read_write');
  const words = layout.elem === 'f16' ? count : Math.ceil(count / layout.perWord);
  return w.finish({
    body: `if (flat >= ${words}u) { return; }\n${dst}[flat] = ${src}[flat];`,
    workgroupSize: [MAP_WORKGROUP, 1, 1],
    dispatch: dispatch1d(Math.ceil(words / MAP_WORKGROUP)),
  });
}
