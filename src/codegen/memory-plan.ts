// The memory planner: which device allocation holds each program buffer.
//
// Program buffers are logical (one per value, views and in-place updates already folded in).
// Buffers whose contents must outlive a schedule run — parameters, training state, constants,
// inputs, graph outputs and whatever the host reads back — get an allocation of their own.
// Every other buffer (an activation, a gradient, a cast copy) lives only from the first kernel
// that touches it to the last one in its schedule, and buffers whose lifetimes do not overlap
// share an allocation, which is as large as the largest of them. The schedules ('train',
// 'eval') never run at the same time and leave nothing behind in transient buffers, so their
// lifetimes never conflict with each other.
//
// Post-condition (checkPlan, run after every plan): no two buffers that share an allocation are
// live at the same kernel of any schedule, and every allocation is at least as large as each
// buffer it holds.
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

export interface MemoryPlan {
  /** Bytes of each device allocation. */
  allocations: number[];
  /** Allocation index of each program buffer; -1 for an activation no kernel touches (fused away). */
  allocOf: number[];
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
 * Plans allocations. `keep` names buffers the host reads or writes beyond the schedules' own
 * inputs and outputs (the loss, fp8 statistics, values a test inspects). With `share: false`
 * every buffer gets its own allocation (the unplanned layout, for comparisons).
 */
export function planMemory(
  buffers: PlanBuffer[],
  kernels: PlanKernel[],
  schedules: Record<string, number[]>,
  keep: Set<number>,
  opts: { share?: boolean } = {},
): MemoryPlan {
  const lives = lifetimes(kernels, schedules);
  const unused = buffers.map((b, i) => b.role === 'activation' && !keep.has(i) && !lives.has(i));
  const pinned = buffers.map((b, i) => !unused[i] && (b.role !== 'activation' || keep.has(i) || !lives.has(i) || opts.share === false));
  const allocOf = new Array<number>(buffers.length).fill(-1);
  const allocations: number[] = [];
  for (let i = 0; i < buffers.length; i++)
    if (pinned[i]) {
      allocOf[i] = allocations.length;
      allocations.push(buffers[i].bytes);
    }
  // Largest first, each into the smallest free allocation that holds it (best fit); an
  // allocation only ever receives buffers no larger than its first one, so it never grows.
  const transient = buffers.map((_, i) => i).filter((i) => !pinned[i] && !unused[i]);
  transient.sort((a, b) => buffers[b].bytes - buffers[a].bytes || a - b);
  // Per shared slot and schedule, the lifetimes of its occupants: disjoint, so sorted by
  // start they are sorted by end too, and one binary search finds the one that could overlap.
  const slots: Map<string, Lifetime[]>[] = [];
  const shared: number[] = []; // allocation index of each shared slot
  const fits = (slot: Map<string, Lifetime[]>, mine: Lifetime[]) =>
    mine.every((l) => {
      const list = slot.get(l.schedule);
      if (!list) return true;
      let lo = 0;
      let hi = list.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (list[mid].last < l.first) lo = mid + 1;
        else hi = mid;
      }
      return lo === list.length || list[lo].first > l.last;
    });
  for (const i of transient) {
    const mine = lives.get(i)!;
    let best = -1;
    for (let s = 0; s < slots.length; s++) {
      if (allocations[shared[s]] < buffers[i].bytes) continue;
      if (best >= 0 && allocations[shared[s]] >= allocations[shared[best]]) continue;
      if (!fits(slots[s], mine)) continue;
      best = s;
    }
    if (best < 0) {
      best = slots.length;
      slots.push(new Map());
      shared.push(allocations.length);
      allocations.push(buffers[i].bytes);
    }
    for (const l of mine) {
      const list = slots[best].get(l.schedule);
      if (!list) slots[best].set(l.schedule, [l]);
      else {
        let at = list.length;
        while (at > 0 && list[at - 1].first > l.first) at--;
        list.splice(at, 0, l);
      }
    }
    allocOf[i] = shared[best];
  }
  const plan = { allocations, allocOf, pinned, lifetimes: lives };
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
    if (plan.allocations[a] < buffers[b].bytes) throw new Error(`memory plan: buffer ${name(b)} (${buffers[b].bytes} B) exceeds its allocation (${plan.allocations[a]} B)`);
    const l = byAlloc.get(a);
    if (l) l.push(b);
    else byAlloc.set(a, [b]);
  });
  for (const users of byAlloc.values()) {
    if (users.length < 2) continue;
    for (const b of users) if (plan.pinned[b]) throw new Error(`memory plan: persistent buffer ${name(b)} shares its allocation`);
    for (let x = 0; x < users.length; x++)
      for (let y = x + 1; y < users.length; y++)
        if (overlap(plan.lifetimes.get(users[x]) ?? [], plan.lifetimes.get(users[y]) ?? []))
          throw new Error(`memory plan: ${name(users[x])} and ${name(users[y])} share an allocation while both are live`);
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
