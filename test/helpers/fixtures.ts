// Reads the PyTorch fixtures written by models/make_fixtures.py.
import { readFileSync } from 'node:fs';
// The arrays are stored as the zoo's fixtures store them (src/conformance/zoo.ts decodes both).
export { decode as decodeArray, type FixtureArray } from '../../src/conformance/zoo.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function loadFixture(name: string): any {
  return JSON.parse(readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8'));
}

/** max |a-b| / max(|b|, floor) over all elements. */
export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-3): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), floor));
  return m;
}
