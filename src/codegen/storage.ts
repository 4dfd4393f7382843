// How each dtype lives in a WGSL storage buffer, and a small builder that writes the
// boilerplate of a kernel: bindings, element loads/stores through the right layout, and
// only the conversion helpers the kernel actually uses.
//
// WGSL has f32, i32, u32 and (with `shader-f16`) f16. Every other format is stored packed
// in u32 words and converted to f32 for arithmetic: bf16 two per word, fp8 four per word,
// and f16 two per word when the target lacks shader-f16. Lane 0 is the low bits.
import { info, isFloat, type DType } from '../ir/dtypes.js';
import { emitWgslHelpers, wgslHelperNames } from './wgsl-dtypes.js';
import { dispatch1d, type Kernel, type KernelBinding, type Target } from './kernel.js';
import type { Node } from '../ir/graph.js';
import type { EmitCtx } from '../ops/types.js';

export interface Layout {
  dtype: DType;
  /** Element type of the WGSL array. */
  elem: 'f32' | 'f16' | 'u32' | 'i32';
  /** Logical elements per array element (1, or 2/4 for packed formats). */
  perWord: 1 | 2 | 4;
}

export function layoutOf(dtype: DType, target: Target): Layout {
  const d = info(dtype);
  if (d.kind !== 'float') return { dtype, elem: 'i32', perWord: 1 };
  if (d.wgsl === 'f32') return { dtype, elem: 'f32', perWord: 1 };
  if (d.wgsl === 'f16' && target.f16) return { dtype, elem: 'f16', perWord: 1 };
  return { dtype, elem: 'u32', perWord: (32 / d.bits) as 2 | 4 };
}

export function isPacked(l: Layout): boolean {
  return l.perWord > 1;
}

/** Buffer size in bytes for `count` logical elements (multiple of 4, at least 4). */
export function bufferBytes(l: Layout, count: number): number {
  const bytes = l.perWord > 1 ? Math.ceil(count / l.perWord) * 4 : count * (l.elem === 'f16' ? 2 : 4);
  return Math.max(4, Math.ceil(bytes / 4) * 4);
}

/** A WGSL floating-point literal that round-trips an f32 exactly. */
export function f32Lit(x: number): string {
  const v = Math.fround(x);
  if (Number.isNaN(v) || !Number.isFinite(v)) throw new Error(`non-finite literal ${x}`);
  let s = String(v);
  if (!/[.eE]/.test(s)) s += '.0';
  return s.includes('e') ? `f32(${s})` : s;
}

export function u32Lit(x: number): string {
  return `${x >>> 0}u`;
}

interface Bound {
  name: string;
  ident: string;
  layout: Layout;
  access: 'read' | 'read_write';
  /** Declared array<atomic<u32>> (see bindAtomic). */
  atomic?: boolean;
  /** An f32 buffer declared array<vec2<f32>> (see bind's `words`). */
  pairs?: boolean;
}

/** Consumers fused into the store of a map kernel (see mapKernel and codegen/fuse.ts). */
export interface MapEpilogue {
  /** The value whose store is replaced. */
  replaces: string;
  out: { buffer: string; dtype: DType };
  /** The stored value from the replaced value `v` (f32, rounded to its dtype) at flat index `idx`. */
  apply(w: KernelWriter, v: string, idx: string): string;
}

export class KernelWriter {
  /** Set by fusion: mapKernel stores `epilogue.apply(...)` into `epilogue.out` instead of `replaces`. */
  epilogue?: MapEpilogue;
  private readonly bound: Bound[] = [];
  private readonly helpers = new Set<string>();
  private readonly extra: string[] = [];
  private readonly ending: string[] = [];
  private endTaken = false;

  constructor(
    readonly name: string,
    readonly target: Target,
  ) {}

  /**
   * Declares a buffer binding; returns the WGSL identifier to use in the body. `words`: an
   * f16 buffer stored natively is declared as u32 words of two values here, an f32 buffer as
   * vec2<f32> pairs (the same bytes), for loadVec to read two values with one load (only for
   * buffers read in aligned runs of two); a buffer bound already keeps its declaration.
   */
  bind(buffer: string, dtype: DType, access: 'read' | 'read_write', opts: { words?: boolean } = {}): string {
    const prev = this.bound.find((b) => b.name === buffer);
    if (prev) {
      if (access === 'read_write') prev.access = 'read_write';
      return prev.ident;
    }
    // The identifier depends on the binding slot only, never on the value's name: kernels of
    // identical layers are then identical text and share one pipeline.
    const ident = `buf${this.bound.length}`;
    const native = layoutOf(dtype, this.target);
    const layout: Layout = opts.words && native.elem === 'f16' ? { dtype, elem: 'u32', perWord: 2 } : native;
    this.bound.push({ name: buffer, ident, layout, access, ...(opts.words && native.elem === 'f32' && access === 'read' ? { pairs: true } : {}) });
    return ident;
  }

  /**
   * Declares a buffer as array<atomic<u32>>, whatever its dtype: its words are then read and
   * written only with atomic built-ins (a reduction across workgroups into it).
   */
  bindAtomic(buffer: string): string {
    if (this.bound.some((b) => b.name === buffer)) throw new Error(`${this.name}: '${buffer}' is bound already; an atomic binding must be its only one`);
    const ident = this.bind(buffer, 'i32', 'read_write');
    this.get(ident).atomic = true;
    return ident;
  }

  layout(ident: string): Layout {
    return this.get(ident).layout;
  }

  /** Requires a helper from wgsl-dtypes (e.g. `round_bf16`). */
  use(helper: string): string {
    this.helpers.add(helper);
    return helper;
  }

  /** Adds free WGSL text (a helper function of this kernel) before the entry point. */
  define(code: string): void {
    if (!this.extra.includes(code)) this.extra.push(code);
  }

  /**
   * Statements the kernel must run at the end of its entry point, in uniform control flow
   * (every invocation of the workgroup reaches them; they may use barriers): a store tail
   * combining what each invocation accumulated. Only kernels built on mapKernel and rowKernel
   * place them (`ending`); finish() refuses a kernel that left them out.
   */
  atEnd(code: string): void {
    if (!this.ending.includes(code)) this.ending.push(code);
  }

  hasEnding(): boolean {
    return this.ending.length > 0;
  }

  /** The statements registered by atEnd, for the kernel builder to place. */
  takeEnding(): string {
    this.endTaken = true;
    return this.ending.join('\n');
  }

  /** Expression reading logical element `idx` (u32 expression): f32 for floats, i32 for ints. */
  load(ident: string, idx: string): string {
    const { layout, pairs } = this.get(ident);
    if (pairs) return `${ident}[(${idx}) >> 1u][(${idx}) & 1u]`;
    if (layout.elem === 'f32' || layout.elem === 'i32') return `${ident}[${idx}]`;
    if (layout.elem === 'f16') return `f32(${ident}[${idx}])`;
    const shift = layout.perWord === 2 ? 1 : 2;
    // 8-bit formats through their branch-free decoder (the same bits as unpack_).
    const quad = layout.perWord === 4 && this.vectorLoads(ident);
    const fn = quad ? `unpack1_${layout.dtype}` : `unpack_${layout.dtype}`;
    this.use(quad ? `unpack_vec_${layout.dtype}` : fn);
    return `${fn}(${ident}[(${idx}) >> ${shift}u], (${idx}) & ${layout.perWord - 1}u)`;
  }

  /**
   * Expression of type vecN<f32> reading `count` (2 or 4) consecutive float elements from
   * `idx`, which the caller guarantees is a multiple of `count`. Packed 8-bit formats decode a
   * whole run at once (unpack2_/unpack4_ helpers), 16-bit ones two values per word, f32
   * pairs two per load; other layouts load element by element.
   */
  loadVec(ident: string, idx: string, count: 2 | 4): string {
    const { layout, pairs } = this.get(ident);
    if (pairs) return count === 2 ? `${ident}[(${idx}) >> 1u]` : `vec4<f32>(${ident}[(${idx}) >> 1u], ${ident}[((${idx}) >> 1u) + 1u])`;
    if (this.vectorLoads(ident)) {
      this.use(`unpack_vec_${layout.dtype}`);
      if (layout.perWord === 2) {
        const pair = (q: number) => `unpack2_${layout.dtype}(${ident}[((${idx}) >> 1u)${q ? ` + ${q}u` : ''}])`;
        return count === 2 ? pair(0) : `vec4<f32>(${pair(0)}, ${pair(1)})`;
      }
      const word = `${ident}[(${idx}) >> 2u]`;
      return count === 4 ? `unpack4_${layout.dtype}(${word})` : `unpack2_${layout.dtype}(${word}, ((${idx}) >> 1u) & 1u)`;
    }
    return `vec${count}<f32>(${Array.from({ length: count }, (_, k) => this.load(ident, k ? `(${idx}) + ${k}u` : idx)).join(', ')})`;
  }

  /** Whether loadVec decodes whole words of this packed buffer at once (8-bit formats, bf16). */
  vectorLoads(ident: string): boolean {
    const { layout, pairs } = this.get(ident);
    return pairs === true || layout.perWord > 1 && wgslHelperNames().includes(`unpack_vec_${layout.dtype}`);
  }

  /** Statement storing f32/i32 `val` at logical element `idx`; only for unpacked layouts. */
  store(ident: string, idx: string, val: string): string {
    const { layout, pairs } = this.get(ident);
    if (layout.perWord > 1 || pairs) throw new Error(`cannot store one element of packed buffer ${ident}`);
    if (layout.elem === 'f32') return `${ident}[${idx}] = ${val};`;
    if (layout.elem === 'i32') return `${ident}[${idx}] = i32(${val});`;
    // f16 native: round with exact integer code, then reinterpret the bits.
    return `${ident}[${idx}] = bitcast<vec2<f16>>(${this.use('to_bits_f16')}(${val}))[0];`;
  }

  /** Statement storing `vals` (perWord f32 expressions) into word `word` of a buffer. */
  storeWord(ident: string, word: string, vals: string[]): string {
    const { layout } = this.get(ident);
    if (vals.length !== layout.perWord) throw new Error(`storeWord: ${ident} takes ${layout.perWord} values`);
    if (layout.perWord === 1) return this.store(ident, word, vals[0]);
    return `${ident}[${word}] = ${this.use(`pack_${layout.dtype}`)}(${vals.join(', ')});`;
  }

  /** Expression rounding an f32 expression to `dtype` (identity for f32). */
  round(dtype: DType, val: string): string {
    if (dtype === 'f32' || !isFloat(dtype)) return val;
    return `${this.use(`round_${dtype}`)}(${val})`;
  }

  bindings(): KernelBinding[] {
    return this.bound.map((b) => ({ name: b.name, access: b.access }));
  }

  /**
   * Assembles the module. `body` is the entry point body; it sees `gid` (global id) and
   * `lid` (local id) as vec3<u32>, and `flat` = the linear invocation index over a 1-D
   * dispatch folded into x/y.
   */
  finish(opts: {
    body: string;
    workgroupSize: [number, number, number];
    dispatch: [number, number, number];
    /** Name under which the body sees its subgroup lane (enables the `subgroups` extension). */
    subgroupLane?: string;
  }): Kernel {
    if (this.ending.length && !this.endTaken) throw new Error(`${this.name}: this kernel does not place the statements its store needs at its end`);
    const usesF16 = this.bound.some((b) => b.layout.elem === 'f16');
    const lane = opts.subgroupLane ? `, @builtin(subgroup_invocation_id) ${opts.subgroupLane}: u32` : '';
    // Every binding is declared read_write, the ones the kernel only reads too (their access
    // stays 'read' in the program's metadata): the memory plan places transient buffers at
    // offsets in shared arena allocations, and WebGPU allows one buffer bound several times in a
    // dispatch only when every binding of it is writable storage (a read-only binding next to a
    // writable one of the same buffer is a usage conflict, whatever their byte ranges).
    const decls = this.bound.map((b, i) => `@group(0) @binding(${i}) var<storage, read_write> ${b.ident}: array<${b.atomic ? 'atomic<u32>' : b.pairs ? 'vec2<f32>' : b.layout.elem}>;`);
    const [wx, wy, wz] = opts.workgroupSize;
    const perRow = opts.dispatch[0] * wx;
    const wgsl = [
      [usesF16 ? 'enable f16;' : '', opts.subgroupLane ? 'enable subgroups;' : ''].filter(Boolean).join('\n') + (usesF16 || opts.subgroupLane ? '\n' : ''),
      decls.join('\n'),
      '',
      emitWgslHelpers(this.helpers),
      ...this.extra,
      `@compute @workgroup_size(${wx}, ${wy}, ${wz})`,
      `fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>${lane}) {`,
      `  let flat = gid.x + gid.y * ${perRow}u;`,
      opts.body.replace(/^/gm, '  ').replace(/\s+$/, ''),
      `}`,
      '',
    ]
      .filter((s, i) => s !== '' || i > 0)
      .join('\n');
    return {
      name: this.name,
      wgsl,
      workgroupSize: opts.workgroupSize,
      dispatch: opts.dispatch,
      bindings: this.bindings(),
    };
  }

  private get(ident: string): Bound {
    const b = this.bound.find((x) => x.ident === ident);
    if (!b) throw new Error(`unknown binding ${ident}`);
    return b;
  }
}

export const MAP_WORKGROUP = 64;

/** Map kernels with statements at their end: words per invocation, and at most this many workgroups. */
const ENDING_WORDS_PER_INVOCATION = 16;
const MAX_ENDING_GROUPS = 1024;

/**
 * A body whose invocations past the end (`past`) do nothing: they return at once, or, where
 * the store registered statements for the kernel's end (KernelWriter.atEnd), skip the work and
 * reach those statements with the others.
 */
function uniformEnd(w: KernelWriter, past: string | undefined, lines: string[]): string {
  const end = w.takeEnding();
  if (!end) return [...(past ? [`if (${past}) { return; }`] : []), ...lines].join('\n');
  return [...(past ? [`if (!(${past})) {`, ...lines.map((l) => `  ${l}`), `}`] : lines), end].join('\n');
}

/**
 * The most common kernel shape: every output element is a function of its index.
 * `compute` is the body of `fn compute(i: u32) -> f32` (or -> i32 for integer outputs)
 * and may use any binding of `w`. Packed outputs are written a whole word per invocation,
 * so no two invocations ever touch the same word.
 */
export function mapKernel(
  w: KernelWriter,
  opts: { out: string; outDtype: DType; count: number; compute: string },
): Kernel {
  const epi = w.epilogue?.replaces === opts.out ? w.epilogue : undefined;
  const out = epi ? w.bind(epi.out.buffer, epi.out.dtype, 'read_write') : w.bind(opts.out, opts.outDtype, 'read_write');
  const layout = w.layout(out);
  const ret = !epi && layout.elem === 'i32' ? 'i32' : 'f32';
  w.define(`fn compute(i: u32) -> ${ret} {\n${opts.compute.replace(/^/gm, '  ').replace(/\s+$/, '')}\n}\n`);
  // The value stored for element `idx`: the computed one, or the fused consumers' from it.
  const value = (idx: string) => (epi ? epi.apply(w, w.round(opts.outDtype, `compute(${idx})`), idx) : `compute(${idx})`);
  const words = Math.ceil(opts.count / layout.perWord);
  const storeLines = (at: string): string[] => {
    if (layout.perWord === 1) return [w.store(out, at, value(at))];
    const vals: string[] = [];
    const lines = [`let base = ${at} * ${layout.perWord}u;`];
    for (let k = 0; k < layout.perWord; k++) {
      lines.push(`var v${k} = 0.0;`, `if (base + ${k}u < ${opts.count}u) { v${k} = ${value(`base + ${k}u`)}; }`);
      vals.push(`v${k}`);
    }
    lines.push(w.storeWord(out, at, vals));
    return lines;
  };
  const lines = storeLines('flat');
  if (!w.hasEnding()) return w.finish({ body: uniformEnd(w, `flat >= ${words}u`, lines), workgroupSize: [MAP_WORKGROUP, 1, 1], dispatch: dispatch1d(Math.ceil(words / MAP_WORKGROUP)) });
  // Statements at the end (a store tail's combining, with a barrier) cost per invocation:
  // each invocation stores several words, in a loop over the grid.
  const groups = Math.min(MAX_ENDING_GROUPS, Math.ceil(words / (MAP_WORKGROUP * ENDING_WORDS_PER_INVOCATION)));
  const loop = [`for (var word = flat; word < ${words}u; word += ${groups * MAP_WORKGROUP}u) {`, ...storeLines('word').map((l) => `  ${l}`), `}`];
  return w.finish({ body: uniformEnd(w, undefined, loop), workgroupSize: [MAP_WORKGROUP, 1, 1], dispatch: [groups, 1, 1] });
}

/**
 * Operand k of node `n` as a kernel loads it (by flat index): its own buffer, or, where fusion
 * folded the node producing it into the loads (`EmitCtx.prologue`, for rows declaring
 * `prologue`), that node's input mapped by its expression.
 */
export function operandLoader(w: KernelWriter, n: Node, ctx: EmitCtx, k: number): (idx: string) => string {
  const pro = ctx.prologue?.[k];
  if (!pro) {
    const b = w.bind(n.inputs[k], ctx.type(n.inputs[k]).dtype, 'read');
    return (idx) => w.load(b, idx);
  }
  const b = w.bind(pro.buffer, pro.dtype, 'read');
  return (idx) => pro.apply(w, w.load(b, idx));
}

/** Rows of a tensor along one axis: `outer` blocks of `len` elements at stride `inner`. */
export interface RowShape {
  outer: number;
  len: number;
  inner: number;
}

/**
 * Row kernels (Softmax, LayerNorm and their gradients): each row's statistics are computed
 * once and every element of the row is written from them. `prologue` is WGSL that sees `row`
 * (the row's number) and `base` (the flat index of its first element) and defines what the
 * elements need; `element(c)` is the f32 value at position `c` (a u32 expression) along the
 * row; elements sit at `base + c * inner`.
 *
 * One invocation handles a whole row, so the statistics cost O(len) per row rather than per
 * element. Where rows would share words of a packed output (a strided row, or a length that is
 * not a multiple of the words' lanes), it falls back to one invocation per element, each
 * running the prologue of its row: the same WGSL statements, so the same results.
 */
export function rowKernel(
  w: KernelWriter,
  opts: { out: string; outDtype: DType; rows: RowShape; prologue: string; element: (c: string) => string },
): Kernel {
  const { outer, len, inner } = opts.rows;
  // Fused consumers (an epilogue, see mapKernel) store their value from each element's.
  const epi = w.epilogue?.replaces === opts.out ? w.epilogue : undefined;
  const out = epi ? w.bind(epi.out.buffer, epi.out.dtype, 'read_write') : w.bind(opts.out, opts.outDtype, 'read_write');
  const value = (c: string, idx: string) => (epi ? epi.apply(w, w.round(opts.outDtype, opts.element(c)), idx) : opts.element(c));
  const pw = w.layout(out).perWord;
  if (pw > 1 && (inner !== 1 || len % pw !== 0)) {
    const compute = [
      `let row = (i / ${len * inner}u) * ${inner}u + i % ${inner}u;`,
      `let base = (i / ${len * inner}u) * ${len * inner}u + i % ${inner}u;`,
      opts.prologue,
      `return ${opts.element(`((i / ${inner}u) % ${len}u)`)};`,
    ].join('\n');
    return mapKernel(w, { out: opts.out, outDtype: opts.outDtype, count: outer * len * inner, compute });
  }
  const rows = outer * inner;
  const store =
    pw === 1
      ? w.store(out, `base + c * ${inner}u`, value('c', `base + c * ${inner}u`))
      : w.storeWord(out, `(base + c) / ${pw}u`, Array.from({ length: pw }, (_, k) => value(`(c + ${k}u)`, `base + c + ${k}u`)));
  const lines = [
    `let base = (row / ${inner}u) * ${len * inner}u + row % ${inner}u;`,
    opts.prologue,
    `for (var c = 0u; c < ${len}u; c += ${pw}u) {`,
    `  ${store}`,
    `}`,
  ];
  const body = `let row = flat;\n${uniformEnd(w, `row >= ${rows}u`, lines)}`;
  return w.finish({ body, workgroupSize: [MAP_WORKGROUP, 1, 1], dispatch: dispatch1d(Math.ceil(rows / MAP_WORKGROUP)) });
}
