// The memory planner: where on the device each program buffer lives.
//
// Program buffers are logical (one per value, views and in-place updates already folded in).
// Buffers whose contents must outlive a schedule run — parameters, training state, constants,
// inputs and what the host reads back at any time — get a device allocation of their own.
// Every other buffer (an activation, a gradient, a cast copy) lives only from the first kernel
// that touches it to the last one in its schedule, and is placed at a byte offset in a shared
// arena allocation: buffers whose lifetimes overlap get disjoint byte ranges, the others may
// reuse the same bytes. A schedule's outputs, which the host reads right after the run, live
// from their first kernel to the end of the schedule: nothing overwrites them before the next
// run. The schedules ('train', 'eval') never run at the same time and leave nothing else
// behind in transient buffers, so their lifetimes never conflict with each other.
//
// Placement is greedy: buffer by buffer, each at the offset of the smallest gap between the
// ranges of the already placed buffers it is live with that holds it (or past them all). The
// result depends on the order; largest first, with two tie-breaks, is tried and the smaller
// total kept. Offsets are multiples of WebGPU's storage-binding offset alignment (256 bytes);
// an arena stops growing at ARENA_LIMIT and the next one begins.
//
// Post-condition (checkPlan, run after every plan): no two buffers whose byte ranges overlap
// in one allocation are live at the same kernel of any schedule, persistent buffers share
// nothing, and every range lies inside its allocation.
import type { ValueRole } from '../ir/graph.js';

export interface PlanBuffer {
  bytes: number;
  role: ValueRole;
}

export interface PlanKernel {
  bindings: { buffer: number }[];
}

/** A buffer's lifetime in one schedule: positions (in that schedule's kernel list) of its first and last use. */
export interface Lifetime {
  schedule: string;
  first: number;
  last: number;
}

/** WebGPU's default minStorageBufferOffsetAlignment: every offset is a multiple of it. */
export const OFFSET_ALIGNMENT = 256;
/** Largest arena: WebGPU's default maxStorageBufferBindingSize (a larger buffer gets its own allocation). */
export const ARENA_LIMIT = 128 * 2 ** 20;

export interface MemoryPlan {
  /** Bytes of each device allocation. */
  allocations: number[];
  /** Allocation index of each program buffer; -1 for an activation no kernel touches (fused away). */
  allocOf: number[];
  /** Byte offset of each program buffer in its allocation (0 for an allocation of its own). */
  offsetOf: number[];
  /** Buffers that hold their contents across runs (never shared). */
  pinned: boolean[];
  /** Lifetimes of the transient buffers, by buffer index. */
  lifetimes: Map<number, Lifetime[]>;
}

/** Position ranges over which each buffer is bound, per schedule. */
export function lifetimes(kernels: PlanKernel[], schedules: Record<string, number[]>): Map<number, Lifetime[]> {
  const out = new Map<number, Lifetime[]>();
  for (const [schedule, list] of Object.entries(schedules)) {
    const seen = new Map<number, Lifetime>();
    list.forEach((k, pos) => {
      for (const { buffer } of kernels[k].bindings) {
        const l = seen.get(buffer);
        if (l) l.last = pos;
        else seen.set(buffer, { schedule, first: pos, last: pos });
      }
    });
    for (const [b, l] of seen) {
      const ls = out.get(b);
      if (ls) ls.push(l);
      else out.set(b, [l]);
    }
  }
  return out;
}

function overlap(a: Lifetime[], b: Lifetime[]): boolean {
  for (const x of a) for (const y of b) if (x.schedule === y.schedule && x.first <= y.last && y.first <= x.last) return true;
  return false;
}

/**
 * Plans allocations. `kept` names the buffers the host writes before a run or reads at any
 * time (inputs, the loss, fp8 statistics, values a test inspects); `untilEnd`, the outputs
 * the host reads right after a run of the named schedules; `fromStart`, the buffers the runtime
 * clears when the named schedules start. With `share: false` every buffer
 * gets its own allocation (the unplanned layout, for comparisons).
 */
export function planMemory(
  buffers: PlanBuffer[],
  kernels: PlanKernel[],
  schedules: Record<string, number[]>,
  kept: Set<number>,
  opts: { share?: boolean; untilEnd?: Map<number, string[]>; fromStart?: Map<number, string[]> } = {},
): MemoryPlan {
  const lives = lifetimes(kernels, schedules);
  const keep = new Set(kept);
  // Buffers the runtime clears when the named schedules start: live from their start.
  for (const [b, names] of opts.fromStart ?? [])
    for (const name of names) {
      const l = lives.get(b)?.find((x) => x.schedule === name);
      if (l) l.first = 0;
    }
  // Outputs read after a run: to the schedule's end; one a schedule never writes (a view of
  // an input...) keeps an allocation of its own.
  for (const [b, names] of opts.untilEnd ?? []) {
    const ls = lives.get(b);
    for (const name of names) {
      const l = ls?.find((x) => x.schedule === name);
      if (l) l.last = schedules[name].length - 1;
      else keep.add(b);
    }
  }
  const unused = buffers.map((b, i) => b.role === 'activation' && !keep.has(i) && !lives.has(i));
  const pinned = buffers.map((b, i) => !unused[i] && (b.role !== 'activation' || keep.has(i) || !lives.has(i) || opts.share === false));
  const allocOf = new Array<number>(buffers.length).fill(-1);
  const offsetOf = new Array<number>(buffers.length).fill(0);
  const allocations: number[] = [];
  for (let i = 0; i < buffers.length; i++)
    if (pinned[i]) {
      allocOf[i] = allocations.length;
      allocations.push(buffers[i].bytes);
    }
  const transient = buffers.map((_, i) => i).filter((i) => !pinned[i] && !unused[i]);
  const align = (n: number) => Math.ceil(n / OFFSET_ALIGNMENT) * OFFSET_ALIGNMENT;
  // Lifetimes as flat arrays (buffer · schedule -> first, last; -1: not used there), for a
  // cheap overlap test in the placement loop, which compares every pair of placed buffers.
  const names = Object.keys(schedules);
  const S = names.length;
  const firstAt = new Int32Array(buffers.length * S).fill(-1);
  const lastAt = new Int32Array(buffers.length * S).fill(-1);
  for (const [b, ls] of lives)
    for (const l of ls) {
      const k = b * S + names.indexOf(l.schedule);
      firstAt[k] = l.first;
      lastAt[k] = l.last;
    }
  const liveTogether = (a: number, b: number): boolean => {
    for (let k = 0; k < S; k++) {
      const fa = firstAt[a * S + k];
      const fb = firstAt[b * S + k];
      if (fa >= 0 && fb >= 0 && fa <= lastAt[b * S + k] && fb <= lastAt[a * S + k]) return true;
    }
    return false;
  };
  // Positions a buffer is live over, all schedules together.
  const span = (b: number): number => {
    let n = 0;
    for (let k = 0; k < S; k++) if (firstAt[b * S + k] >= 0) n += lastAt[b * S + k] - firstAt[b * S + k] + 1;
    return n;
  };
  const endOf = (b: number): number => {
    for (let k = S - 1; k >= 0; k--) if (firstAt[b * S + k] >= 0) return k * 1e9 + lastAt[b * S + k];
    return 0;
  };
  const startOf = (b: number): number => {
    for (let k = 0; k < S; k++) if (firstAt[b * S + k] >= 0) return k * 1e9 + firstAt[b * S + k];
    return 0;
  };

  /** Places the transient buffers in this order; returns the arenas' sizes, offsets and allocations. */
  const place = (order: number[]) => {
    const sizes: number[] = [];
    const arenaOf = new Map<number, number>();
    const offset = new Float64Array(buffers.length);
    // The buffers placed in each arena, in offset order (so the gaps between the ranges of
    // those live with a new buffer come out of one walk, with no sort).
    const arenas: number[][] = [];
    const own: number[] = []; // buffers too large for an arena
    for (const i of order) {
      const bytes = buffers[i].bytes;
      if (bytes > ARENA_LIMIT) {
        own.push(i);
        continue;
      }
      let done = false;
      for (let a = 0; a < arenas.length && !done; a++) {
        // The smallest gap between the ranges of the buffers live with this one that holds it.
        const members = arenas[a];
        let best = -1;
        let bestGap = Infinity;
        let cur = 0;
        for (const o of members) {
          if (!liveTogether(o, i)) continue;
          const from = offset[o];
          if (from - cur >= bytes && from - cur < bestGap) {
            best = cur;
            bestGap = from - cur;
          }
          cur = Math.max(cur, align(from + buffers[o].bytes));
        }
        if (best < 0) best = cur;
        if (best + bytes > ARENA_LIMIT) continue;
        offset[i] = best;
        arenaOf.set(i, a);
        // Insert after the members at offsets up to `best`.
        let lo = 0;
        let hi = members.length;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (offset[members[mid]] <= best) lo = mid + 1;
          else hi = mid;
        }
        members.splice(lo, 0, i);
        sizes[a] = Math.max(sizes[a], best + bytes);
        done = true;
      }
      if (!done) {
        arenaOf.set(i, arenas.length);
        offset[i] = 0;
        arenas.push([i]);
        sizes.push(bytes);
      }
    }
    return { sizes, arenaOf, offset, own, total: sizes.reduce((x, y) => x + y, 0) };
  };
  // Greedy placement depends on the order: largest first, and among buffers of one size
  // (a transformer's are mostly a few sizes) the longest lived first, the earliest first or
  // the latest to end first; they are tried in turn and the smallest total kept (GPT12 fp32
  // at batch 8: 62.6 MiB with ties in buffer order; 59.0, 59.3 and 58.5 with these three,
  // for a peak of 58.0 live).
  const orders = [
    () => [...transient].sort((a, b) => buffers[b].bytes - buffers[a].bytes || span(b) - span(a) || a - b),
    () => [...transient].sort((a, b) => buffers[b].bytes - buffers[a].bytes || startOf(a) - startOf(b) || a - b),
    () => [...transient].sort((a, b) => buffers[b].bytes - buffers[a].bytes || endOf(b) - endOf(a) || a - b),
  ];
  // No placement takes fewer bytes than are live at once in a schedule: one that reaches that
  // bound ends the search.
  let bound = 0;
  for (let k = 0; k < S; k++) {
    const delta = new Float64Array((schedules[names[k]]?.length ?? 0) + 1);
    for (const i of transient)
      if (firstAt[i * S + k] >= 0 && buffers[i].bytes <= ARENA_LIMIT) {
        delta[firstAt[i * S + k]] += buffers[i].bytes;
        delta[lastAt[i * S + k] + 1] -= buffers[i].bytes;
      }
    let cur = 0;
    for (const d of delta) bound = Math.max(bound, (cur += d));
  }
  let placed = place(orders[0]());
  for (const order of orders.slice(1)) {
    if (placed.total <= bound) break;
    const p = place(order());
    if (p.total < placed.total) placed = p;
  }
  const base = allocations.length;
  allocations.push(...placed.sizes);
  for (const [i, a] of placed.arenaOf) {
    allocOf[i] = base + a;
    offsetOf[i] = placed.offset[i];
  }
  for (const i of placed.own) {
    allocOf[i] = allocations.length;
    allocations.push(buffers[i].bytes);
  }
  const plan = { allocations, allocOf, offsetOf, pinned, lifetimes: lives };
  checkPlan(plan, buffers);
  return plan;
}

/** The planner's post-condition; throws on the first violation. */
export function checkPlan(plan: MemoryPlan, buffers: PlanBuffer[], names?: (b: number) => string): void {
  const name = names ?? ((b: number) => `#${b}`);
  const byAlloc = new Map<number, number[]>();
  plan.allocOf.forEach((a, b) => {
    if (a === -1 && !plan.pinned[b] && !plan.lifetimes.has(b) && buffers[b].role === 'activation') return; // never touched
    if (a < 0 || a >= plan.allocations.length) throw new Error(`memory plan: buffer ${name(b)} has no allocation`);
    const off = plan.offsetOf[b];
    if (off < 0 || off % OFFSET_ALIGNMENT !== 0 || off + buffers[b].bytes > plan.allocations[a])
      throw new Error(`memory plan: buffer ${name(b)} (${buffers[b].bytes} B at ${off}) does not lie inside its allocation (${plan.allocations[a]} B)`);
    const l = byAlloc.get(a);
    if (l) l.push(b);
    else byAlloc.set(a, [b]);
  });
  for (const users of byAlloc.values()) {
    if (users.length < 2) continue;
    for (const b of users) if (plan.pinned[b]) throw new Error(`memory plan: persistent buffer ${name(b)} shares its allocation`);
    // Sweep in offset order: each buffer against those whose ranges it reaches into.
    const sorted = [...users].sort((x, y) => plan.offsetOf[x] - plan.offsetOf[y]);
    for (let x = 0; x < sorted.length; x++) {
      const end = plan.offsetOf[sorted[x]] + buffers[sorted[x]].bytes;
      for (let y = x + 1; y < sorted.length && plan.offsetOf[sorted[y]] < end; y++)
        if (overlap(plan.lifetimes.get(sorted[x]) ?? [], plan.lifetimes.get(sorted[y]) ?? []))
          throw new Error(`memory plan: ${name(sorted[x])} and ${name(sorted[y])} share bytes while both are live`);
    }
  }
}

/** Peak bytes of simultaneously live transient buffers in one schedule, and the position of the peak. */
export function peakLive(plan: MemoryPlan, buffers: PlanBuffer[], schedule: string, length: number, count?: (b: number) => boolean): { bytes: number; at: number } {
  const delta = new Float64Array(length + 1);
  for (const [b, ls] of plan.lifetimes) {
    if (plan.pinned[b] || (count && !count(b))) continue;
    for (const l of ls)
      if (l.schedule === schedule) {
        delta[l.first] += buffers[b].bytes;
        delta[l.last + 1] -= buffers[b].bytes;
      }
  }
  let cur = 0;
  let best = { bytes: 0, at: 0 };
  for (let i = 0; i < length; i++) {
    cur += delta[i];
    if (cur > best.bytes) best = { bytes: cur, at: i };
  }
  return best;
}
