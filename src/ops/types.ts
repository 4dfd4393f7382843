// The shape of one row of the op table. Every pass, the interpreter and codegen read these
// rows; none of them switches on op names.
import type { DType } from '../ir/dtypes.js';
import type { Attrs, AttrValue, Node, PrecisionClass } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import type { Kernel, Target } from '../codegen/kernel.js';
import type { KernelWriter } from '../codegen/storage.js';
import type { GemmOptions } from '../codegen/kernels/gemm.js';

export interface ValueType {
  dtype: DType;
  shape: number[];
}

export interface InterpCtx {
  /** Output types as inferred (the interpreter rounds results to these). */
  outTypes: ValueType[];
  /** Deterministic random source for ops such as Dropout. */
  random?: () => number;
}

export interface GradCtx {
  node: Node;
  /** Gradient of each output (undefined: that output does not reach the loss). */
  dy: (string | undefined)[];
  type(value: string): ValueType;
  /** Adds a node computing `op` (another row of the table); returns its output names. */
  emit(op: string, inputs: string[], attrs?: Attrs, nOutputs?: number): string[];
  /** A constant scalar/tensor value. */
  constant(t: Tensor): string;
}

/** What a row's `decompose` builds its replacement with (see OpRow.decompose). */
export interface DecomposeCtx {
  node: Node;
  /** Type of any value of the graph, the ones emitted so far included. */
  type(value: string): ValueType;
  /** Contents of a constant value (undefined when it is not one). */
  constValue(value: string): Tensor | undefined;
  /** Adds a node computing `op` (another row of the table), types inferred; returns its outputs. */
  emit(op: string, inputs: string[], attrs?: Attrs, nOutputs?: number): string[];
  /** A constant value. */
  constant(t: Tensor): string;
}

export interface EmitCtx {
  target: Target;
  type(value: string): ValueType;
  /** A writer for one kernel of this node (kernel names are made unique by codegen). */
  writer(suffix?: string): KernelWriter;
  /**
   * Set by fusion for rows with `epilogue`: the kernel stores `apply(w, v, idx)` into `out`
   * instead of storing its own output, where `v` is the f32 value of its output element at flat
   * index `idx` (both WGSL expressions), already rounded to the output's dtype.
   */
  epilogue?: Epilogue;
  /**
   * Set by fusion for rows with `prologue`: operand input k is read from `buffer` (the input of
   * the unary elementwise node that produced it, fused away) and each element loaded is mapped
   * by `apply` (that node's expression, rounded to its output dtype as the unfused program
   * stored it): a cast into a GEMM's operand loads; or an fp8 quantizer (`loadPrologue`),
   * whose `scale` then gives the operand's inverse scale.
   */
  prologue?: Record<number, Prologue>;
}

export interface Prologue {
  buffer: string;
  dtype: DType;
  apply(w: KernelWriter, v: string): string;
  /** An fp8 operand's inverse scale (an f32 expression; binds what it reads in `w`), computed instead of read from the row's scale input. */
  scale?(w: KernelWriter): string;
}

export interface Epilogue {
  out: { buffer: string; dtype: DType };
  apply(w: KernelWriter, v: string, idx: string): string;
}

/** A row computed in the store of its input's producer (OpRow.storeTail). */
export interface StoreTail {
  out: { buffer: string; dtype: DType };
  /**
   * The stored value (f32) from the input's value `v`, already rounded to the input's dtype, at
   * its flat index `idx`; binds what it reads in `w`, the producer's writer. Each element is
   * stored once, so it may count what it stores.
   */
  apply(w: KernelWriter, v: string, idx: string): string;
  /** Buffers the producer's kernel needs zeroed when the schedule starts (Kernel.clear). */
  clear?: string[];
  /** Kernels run right after the producer's (finishing what it accumulated). */
  after: Kernel[];
}

export interface OpRow {
  /** ONNX op type, or an internal op of mpc (domain 'mpc', never in an ONNX file). */
  op: string;
  domain: '' | 'mpc';
  /** Supported ONNX opset range of this definition (inclusive). */
  opsets?: [number, number];
  precision: PrecisionClass;
  /**
   * What the op's cost is like: 'elementwise' (each output element is a function of the input
   * elements at its broadcast index) or 'movement' (a permutation/selection of input elements).
   * Such values are cheap to recompute: the rematerialize pass recomputes them for the backward
   * pass instead of keeping them alive. Absent: anything else (GEMMs, reductions...).
   */
  kind?: 'elementwise' | 'movement';
  /**
   * Rows without a `kind` whose recomputation in the backward pass is cheap next to the bytes
   * their output would hold from the forward pass to the backward pass (a row-wise
   * normalization, a product with a short reduction): given the node and its input types,
   * whether the rematerialize pass may recompute it. Such a recomputed value is shared by all
   * its backward readers (an elementwise one is recomputed per reader, fused into it).
   */
  recompute?: (n: Node, ins: ValueType[]) => boolean;
  /**
   * Elementwise rows: the WGSL expression of one output element, from its operands' values
   * (f32 expressions for floats, i32 for integers and bool, in input order) before rounding to
   * the output dtype. The row's own kernel and fused kernels (codegen/fuse.ts) both render it.
   */
  expr?: (n: Node, w: KernelWriter, ins: ValueType[], out: ValueType) => (...xs: string[]) => string;
  /**
   * The row's WGSL is one kernel writing its one output element by element and honours
   * `EmitCtx.epilogue` (or its writer's, for rows built on mapKernel/rowKernel): elementwise
   * consumers can be fused into its store (GEMM epilogues; Softmax and LayerNorm gradients).
   */
  epilogue?: boolean;
  /**
   * Operand inputs whose unary elementwise producer (a cast of a weight or of an activation)
   * fusion may fold into this row's loads (`EmitCtx.prologue`): the GEMM rows' A and B, and
   * Gemm's addend C (a bias cast to the GEMM's type).
   */
  prologue?: number[];
  /**
   * Whether a prologue on operand k pays (default: yes): a GEMM that loads each element of an
   * operand many times would round it as often, where a cast kernel rounds it once.
   */
  prologueWorth?: (n: Node, k: number, ins: ValueType[], out: ValueType, target: Target) => boolean;
  /**
   * A row that fusion may fold into the loads of its readers although it is not elementwise:
   * the fp8 quantizer with given statistics (output 0: `apply` of each element of input 0;
   * output 1: the inverse scale, `scale`), where every reader of output 0 is an fp8 operand of
   * a row with `prologue` and `fp8` that reads output 1 as that operand's inverse scale. Not
   * where the row would absorb its producer (`absorbsProducer`).
   */
  loadPrologue?: {
    apply: (n: Node, w: KernelWriter, v: string) => string;
    scale: (n: Node, w: KernelWriter) => string;
  };
  /**
   * The producer of input `input` that this row's kernels compute as well, where `accepts`
   * allows it: fusion then emits `wgsl(producer, n, ctx)` in this node's place and the
   * producer gets no kernel of its own (the fp8 quantizer measures the tensor's statistics in
   * the same pass that quantizes it). The kernels still write every output of both nodes.
   */
  absorbsProducer?: {
    input: number;
    accepts: (producer: Node, n: Node) => boolean;
    wgsl: (producer: Node, n: Node, ctx: EmitCtx) => Kernel[];
  };
  /**
   * A consumer that the kernel producing its input `input` can compute in its store (the fp8
   * quantizer, with the statistics it absorbed): where that value has no other reader, fusion
   * makes the producer store `tail(...).apply` of each element into the tail's own output
   * instead of storing the value (codegen/fuse.ts). `accepts`: whether it can, given the
   * producer it absorbed (`absorbsProducer`), if any.
   */
  storeTail?: {
    input: number;
    accepts: (n: Node, absorbed: Node | undefined) => boolean;
    tail: (n: Node, absorbed: Node | undefined, ctx: EmitCtx) => StoreTail;
  };
  /**
   * Rows that lower to the GEMM emitter: the options of the node's GEMM under `ctx` (its
   * epilogue and prologues included). Fusion builds kernels around such a product (attention:
   * a GEMM, a row-wise op over its result, a GEMM reading that).
   */
  gemm?: (n: Node, ctx: EmitCtx) => GemmOptions;
  /**
   * Row-wise ops along the last axis (Softmax): the WGSL of one row, given `at(c)`, the f32
   * value of the row's element c (a u32 expression). `prologue` runs once per row (its
   * statistics); `element(c)` is the f32 result at c, before rounding to the output dtype.
   * The row's own kernel renders it, and so do fused kernels that hold the row in registers.
   */
  rows?: {
    /** Whether the node works along its input's last axis (what a fused kernel needs). */
    lastAxis: (n: Node, shape: number[]) => boolean;
    body: (n: Node, w: KernelWriter, len: number, at: (c: string) => string) => { prologue: string; element: (c: string) => string };
  };
  /**
   * Inputs that carry floating-point data and take part in precision decisions; the rest
   * (shapes, indices, labels, scaling state) keep their dtype. Default: every input.
   */
  dataInputs?: number[];
  /** Minimum / maximum number of inputs (optional inputs may be '' or missing). */
  arity: [number, number];
  outputs: number;
  /** Output i shares input j's buffer: a view (Reshape) or an in-place update (optimizers). */
  alias?: { view?: boolean; pairs: [number, number][] };
  /**
   * For training-state updates: input slots of the loss scaler's values. `scale` divides the
   * gradient (unscaling), `flag` is the found-inf flag that makes the update skip the step.
   */
  scalerInputs?: { scale?: number; flag: number };
  /**
   * GEMM-like ops under the fp8 policy: which inputs become fp8 and where their inverse
   * scales go (the quantize-fp8 pass fills them; attribute `to` then gives the output type).
   */
  fp8?: { operands: [number, number]; scaleInputs: [number, number] };
  /**
   * Shape/dtype inference. `consts[i]` holds input i's contents when it is a constant
   * (Reshape's shape, for instance). Must throw a clear Error for invalid inputs.
   */
  infer(node: Node, ins: ValueType[], consts: (Tensor | undefined)[]): ValueType[];
  /** CPU reference kernel: exact math in f64/f32; the interpreter rounds outputs. */
  interp(node: Node, ins: Tensor[], ctx: InterpCtx): Tensor[];
  /** Reverse-mode rule: gradients of the inputs from those of the outputs. */
  grad?(ctx: GradCtx): (string | undefined)[];
  /**
   * Lowering into other rows of the table (an unrolled recurrence, a contraction as MatMuls):
   * the decompose pass replaces the node with what this emits, once shapes are known, so
   * mixed precision, autodiff, fusion and codegen only meet those rows. Returns the values that
   * replace the node's outputs ('' where the node's output is omitted). Rows with it need no
   * `grad` or `wgsl`: nothing after that pass sees them.
   */
  decompose?(ctx: DecomposeCtx): string[];
  /** WGSL emitter. Absent for views (no kernel) and compile-time-only ops. */
  wgsl?(node: Node, ctx: EmitCtx): Kernel[];
}

// Attribute accessors with defaults and clear errors.
export function attrInt(n: Node, key: string, dflt?: number): number {
  const v = n.attrs[key];
  if (v === undefined) {
    if (dflt === undefined) throw new Error(`${n.op} '${n.name}': missing attribute ${key}`);
    return dflt;
  }
  if (typeof v !== 'number') throw new Error(`${n.op} '${n.name}': attribute ${key} must be a number`);
  return v;
}

export const attrFloat = attrInt;

export function attrInts(n: Node, key: string, dflt?: number[]): number[] {
  const v: AttrValue | undefined = n.attrs[key];
  if (v === undefined) {
    if (dflt === undefined) throw new Error(`${n.op} '${n.name}': missing attribute ${key}`);
    return dflt;
  }
  if (!Array.isArray(v)) throw new Error(`${n.op} '${n.name}': attribute ${key} must be a list`);
  return v as number[];
}

export function attrString(n: Node, key: string, dflt?: string): string {
  const v = n.attrs[key];
  if (v === undefined) {
    if (dflt === undefined) throw new Error(`${n.op} '${n.name}': missing attribute ${key}`);
    return dflt;
  }
  if (typeof v !== 'string') throw new Error(`${n.op} '${n.name}': attribute ${key} must be a string`);
  return v;
}

export function attrTensor(n: Node, key: string): Tensor {
  const v = n.attrs[key];
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${n.op} '${n.name}': attribute ${key} must be a tensor`);
  return v as Tensor;
}
