// Shape and dtype of every value, from the op table's inference rules.
import { inferNode } from '../ir/build.js';
import type { Pass } from './pass.js';

export const inferTypes: Pass = {
  name: 'infer-types',
  doc: 'infer the static shape and dtype of every value',
  run(g) {
    for (const n of g.nodes) inferNode(g, n);
    g.meta.typed = true;
    return g;
  },
  check: (g) =>
    [...g.values.values()].filter((v) => v.shape.some((d) => typeof d !== 'number')).map((v) => `value '${v.name}' has a non-static shape`),
};
