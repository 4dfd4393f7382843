// (rows to come)
import type { OpRow } from './types.js';

export const recurrentOps: OpRow[] = [];
